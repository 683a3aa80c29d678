//! Time per stage of the parser over the fixture corpus (for tuning).
use std::time::Instant;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/emails");
    let mut paths: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    let corpus: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let opts = leadmail::parse::ParseOptions::default();
    for m in &corpus {
        leadmail::parse::parse(m, &opts);
    }
    let rounds = 100;
    let time = |name: &str, f: &dyn Fn(&[u8])| {
        let start = Instant::now();
        for _ in 0..rounds {
            for m in &corpus {
                f(m);
            }
        }
        let per = start.elapsed().as_secs_f64() / (rounds * corpus.len()) as f64;
        println!(
            "{name:<12} {:>8.1} us/msg {:>9.0} msg/s",
            per * 1e6,
            1.0 / per
        );
    };
    time("mail-parser", &|m| {
        std::hint::black_box(mail_parser::MessageParser::default().parse(m));
    });
    time("mime", &|m| {
        std::hint::black_box(leadmail::parse::mime::Mail::parse(m));
    });
    time("full", &|m| {
        std::hint::black_box(leadmail::parse::parse(m, &opts));
    });
    // Per message, slowest first.
    let mut per: Vec<(f64, usize)> = corpus
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let start = Instant::now();
            for _ in 0..50 {
                std::hint::black_box(leadmail::parse::parse(m, &opts));
            }
            (start.elapsed().as_secs_f64() / 50.0 * 1e6, i)
        })
        .collect();
    per.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (us, i) in per.iter().take(8) {
        println!(
            "  {:<40} {us:>5.0} us ({} bytes)",
            paths[*i].file_name().unwrap().to_string_lossy(),
            corpus[*i].len()
        );
    }
}
