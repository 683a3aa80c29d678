//! Fuzzes the parser: any bytes in, a `ParsedMessage` out. libfuzzer-sys
//! aborts on any panic, also one that `parse` itself would contain, so a
//! crash found here is a bug below the guard; it goes into
//! `fixtures/crashes/` as a regression test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = leadmail::parse::ParseOptions::default();
    let parsed = leadmail::parse::parse(data, &options);
    // The JSON contract of `leadmail parse` holds for whatever came out.
    let _ = serde_json::to_string(&parsed);
});
