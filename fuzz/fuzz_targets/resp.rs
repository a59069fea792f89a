//! Fuzzes the RESP2 decoder (`readyloop::codec::resp::decode`): arbitrary bytes, whole and
//! split at a fuzzer-chosen point. It must never panic, never report consuming more than it
//! was given, and decoding a prefix must never succeed with a different value than the whole.
#![no_main]

use libfuzzer_sys::fuzz_target;
use readyloop::codec::resp::decode;

fuzz_target!(|data: &[u8]| {
    let whole = decode(data);
    if let Ok(Some((_, used))) = &whole {
        assert!(*used <= data.len());
    }
    // A prefix is either incomplete, an error, or the same complete value.
    let cut = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
    if let Ok(Some((value, used))) = decode(&data[..cut]) {
        assert!(used <= cut);
        match &whole {
            Ok(Some((w, wused))) => {
                assert_eq!(used, *wused);
                assert_eq!(format!("{value:?}"), format!("{w:?}"));
            }
            other => panic!("prefix decoded, whole gave {other:?}"),
        }
    }
});
