//! Fuzz properties of the RESP2 decoder (`codec::resp`), which reads every reply of the Redis
//! server the relay talks to.
//!
//! Checked on the input as a reply stream: a decoded value never claims more bytes than it
//! was given, decodes the same from exactly the bytes it used, and any prefix of the input is
//! incomplete, an error, or that same value (never a different one). And as arguments: a
//! command our encoder writes from the input's pieces decodes to an array of exactly those
//! bulk strings, and every proper prefix of it is incomplete.

use super::parameter;
use crate::codec::resp::{decode, encode_command, Value};

/// The RESP properties for one fuzz input.
pub fn check(data: &[u8]) {
    let whole = decode(data);
    if let Ok(Some((value, used))) = &whole {
        assert!(*used <= data.len());
        let exact = decode(&data[..*used]);
        assert_eq!(
            format!("{exact:?}"),
            format!("{:?}", Ok::<_, ()>(Some((value, used))))
        );
    }
    let (p, _) = parameter(data);
    let cut = usize::from(p) % (data.len() + 1);
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

    let args: Vec<&[u8]> = data.split(|&b| b == b' ').collect();
    let mut command = Vec::new();
    encode_command(&mut command, &args);
    match decode(&command) {
        Ok(Some((Value::Array(items), used))) => {
            assert_eq!(used, command.len());
            let got: Vec<Option<&[u8]>> = items.iter().map(Value::as_bytes).collect();
            let want: Vec<Option<&[u8]>> = args.iter().map(|a| Some(*a)).collect();
            assert_eq!(got, want);
            assert!(items.iter().all(|v| matches!(v, Value::Bulk(_))));
        }
        other => panic!("our command decoded to {other:?}"),
    }
    let prefix = &command[..split_len(p, command.len())];
    assert!(
        matches!(decode(prefix), Ok(None)),
        "a proper prefix of a command decoded"
    );
}

/// A proper prefix length chosen by `p`.
fn split_len(p: u8, len: usize) -> usize {
    (len.saturating_sub(1)) * usize::from(p) / 255
}
