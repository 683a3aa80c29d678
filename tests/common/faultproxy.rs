//! A TCP proxy between leadmail and the real Dovecot (plain IMAP) that
//! injects faults: a transfer that stalls mid-FETCH, a server that answers
//! NO or BAD, dropped connections, a very slow link. Everything else passes
//! through unchanged. Each one-shot fault records that it fired, so a test
//! can tell the fault was exercised and not just absent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Fault {
    /// The next command containing `command` gets this much of its response,
    /// then nothing more (the connection stays open).
    Stall { command: &'static str, after: usize },
    /// The next command containing `command` is answered `<tag> <answer>`
    /// by the proxy; the server never sees it.
    Answer {
        command: &'static str,
        answer: &'static str,
    },
    /// Every byte from the server is passed on in pieces of `chunk`, each
    /// after `pause` (until cleared).
    Slow { chunk: usize, pause: Duration },
}

#[derive(Default)]
struct Shared {
    fault: Mutex<Option<Fault>>,
    fired: AtomicUsize,
    accepted: AtomicUsize,
    open: Mutex<Vec<TcpStream>>,
    closed: AtomicBool,
}

pub struct FaultProxy {
    pub port: u16,
    shared: Arc<Shared>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if s.closed.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                s.accepted.fetch_add(1, Ordering::SeqCst);
                connection(s.clone(), client, server);
            }
        });
        FaultProxy { port, shared }
    }

    pub fn set(&self, fault: Fault) {
        *self.shared.fault.lock().unwrap() = Some(fault);
    }

    pub fn clear(&self) {
        *self.shared.fault.lock().unwrap() = None;
    }

    /// How many one-shot faults have fired so far.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Cuts every open connection, as a network failure would.
    pub fn drop_connections(&self) {
        for s in self.shared.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.drop_connections();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn connection(shared: Arc<Shared>, client: TcpStream, server: TcpStream) {
    {
        let mut open = shared.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    let to_client = Arc::new(Mutex::new(client.try_clone().unwrap()));
    // Bytes of the current response still allowed through; None = unlimited.
    let budget: Arc<Mutex<Option<usize>>> = Arc::new(Mutex::new(None));

    // Client -> server, line by line (leadmail sends no literals).
    {
        let shared = shared.clone();
        let to_client = to_client.clone();
        let budget = budget.clone();
        let mut to_server = server.try_clone().unwrap();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(client);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).to_ascii_uppercase();
                let mut fault = shared.fault.lock().unwrap();
                match fault.clone() {
                    Some(Fault::Answer { command, answer }) if text.contains(command) => {
                        *fault = None;
                        shared.fired.fetch_add(1, Ordering::SeqCst);
                        let tag = text.split(' ').next().unwrap_or("*").to_string();
                        let _ = write!(to_client.lock().unwrap(), "{tag} {answer}\r\n");
                        continue;
                    }
                    Some(Fault::Stall { command, after }) if text.contains(command) => {
                        *fault = None;
                        shared.fired.fetch_add(1, Ordering::SeqCst);
                        *budget.lock().unwrap() = Some(after);
                    }
                    _ => {}
                }
                drop(fault);
                if to_server.write_all(&line).is_err() {
                    break;
                }
            }
            let _ = to_server.shutdown(Shutdown::Both);
        });
    }

    // Server -> client, honouring stalls and slowness.
    std::thread::spawn(move || {
        let mut server = server;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match server.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let mut data = &buf[..n];
            let mut stalled = false;
            if let Some(left) = budget.lock().unwrap().as_mut() {
                let pass = data.len().min(*left);
                data = &data[..pass];
                *left -= pass;
                stalled = *left == 0;
            }
            let slow = match shared.fault.lock().unwrap().clone() {
                Some(Fault::Slow { chunk, pause }) => Some((chunk, pause)),
                _ => None,
            };
            let written = match slow {
                Some((chunk, pause)) => data.chunks(chunk).all(|piece| {
                    std::thread::sleep(pause);
                    to_client.lock().unwrap().write_all(piece).is_ok()
                }),
                None => to_client.lock().unwrap().write_all(data).is_ok(),
            };
            if !written {
                break;
            }
            if stalled {
                // Hold the connection open and say nothing, until leadmail gives up on it.
                let mut sink = [0u8; 1024];
                while matches!(server.read(&mut sink), Ok(n) if n > 0) {}
                break;
            }
        }
        let _ = to_client.lock().unwrap().shutdown(Shutdown::Both);
    });
}
