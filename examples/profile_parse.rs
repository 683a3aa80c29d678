//! Parses the fixture corpus in a loop, for profilers (`perf record`, callgrind).
fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/emails");
    let corpus: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let opts = leadmail::parse::ParseOptions::default();
    for _ in 0..rounds {
        for m in &corpus {
            std::hint::black_box(leadmail::parse::parse(m, &opts));
        }
    }
}
