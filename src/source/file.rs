//! File input: a file, a directory (every `*.eml` in it, sorted by name) or
//! `-` for standard input. Used by `leadmail ingest`, by MTAs piping mail in,
//! and for one-off imports.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::RawMessage;

#[derive(Debug, thiserror::Error)]
pub enum FileSourceError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
}

/// One input to read: expanded from the command line before anything is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Stdin,
    File(PathBuf),
}

/// Expands command-line arguments into inputs: directories become their
/// `*.eml` files in name order. A missing path is kept as a file input so
/// that reading it reports the error in order with the rest.
pub fn expand(args: &[PathBuf]) -> Result<Vec<Input>, FileSourceError> {
    let mut inputs = Vec::new();
    for arg in args {
        if arg.as_os_str() == "-" {
            inputs.push(Input::Stdin);
        } else if arg.is_dir() {
            let entries = std::fs::read_dir(arg).map_err(|error| FileSourceError::Read {
                path: arg.display().to_string(),
                error,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && has_eml_extension(p))
                .collect();
            files.sort();
            inputs.extend(files.into_iter().map(Input::File));
        } else {
            inputs.push(Input::File(arg.clone()));
        }
    }
    Ok(inputs)
}

fn has_eml_extension(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("eml"))
}

/// Reads one input whole.
pub fn read(input: &Input) -> Result<RawMessage, FileSourceError> {
    match input {
        Input::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|error| FileSourceError::Read {
                    path: "-".to_string(),
                    error,
                })?;
            Ok(RawMessage {
                origin: "-".to_string(),
                bytes,
            })
        }
        Input::File(path) => {
            let bytes = std::fs::read(path).map_err(|error| FileSourceError::Read {
                path: path.display().to_string(),
                error,
            })?;
            Ok(RawMessage {
                origin: path.display().to_string(),
                bytes,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_expand_to_sorted_eml_files() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["b.eml", "a.EML", "notes.txt"] {
            std::fs::write(dir.path().join(name), "x").unwrap();
        }
        let got = expand(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(
            got,
            [
                Input::File(dir.path().join("a.EML")),
                Input::File(dir.path().join("b.eml"))
            ]
        );
    }

    #[test]
    fn missing_file_is_an_error_on_read() {
        let inputs = expand(&[PathBuf::from("/nonexistent/x.eml")]).unwrap();
        assert!(read(&inputs[0]).is_err());
    }
}
