//! Payload masking (RFC 6455 §5.3): `byte[i] ^= key[i % 4]`, the same operation both ways.
//!
//! Every client → server byte goes through here once, so it is the one hot loop of the
//! codec. It works on 8 bytes at a time as a `u64` (the compiler turns this into wide
//! vector code) and takes an `offset` — the position of `buf[0]` within the payload — so a
//! payload can be unmasked piece by piece as it arrives.

/// XORs `buf` with the masking key `key`, where `buf[0]` is byte `offset` of the payload.
///
/// Applying it twice with the same key and offset gives back the original bytes.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let mut key = key;
    key.rotate_left(offset % 4);
    let [k0, k1, k2, k3] = key;
    // Native byte order on both sides of the XOR, so byte i of the word meets key[i % 4].
    let wide = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut words = buf.chunks_exact_mut(8);
    for word in &mut words {
        // Always 8 bytes (`chunks_exact`); the check compiles away.
        if let Ok(bytes) = <[u8; 8]>::try_from(&*word) {
            word.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ wide).to_ne_bytes());
        }
    }
    // Each word is a whole number of key periods, so the tail starts again at key[0].
    for (byte, k) in words.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition from §5.3, byte by byte: the reference for the fast version.
    fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, byte) in buf.iter_mut().enumerate() {
            *byte ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_7_hello() {
        let mut hello = *b"Hello";
        apply_mask(&mut hello, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(hello, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }

    #[test]
    fn fast_matches_bytewise_for_every_length_and_offset() {
        let key = [0x12, 0x34, 0x56, 0x78];
        for len in 0..70 {
            for offset in 0..9 {
                let data: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
                let (mut fast, mut slow) = (data.clone(), data.clone());
                apply_mask(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
                apply_mask(&mut fast, key, offset);
                assert_eq!(fast, data, "twice is identity, len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn unmasking_in_pieces_equals_unmasking_whole() {
        let key = [0xde, 0xad, 0xbe, 0xef];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for cut1 in 0..data.len() {
            for cut2 in [cut1, cut1 + 1, cut1 + 7, data.len()] {
                let cut2 = cut2.min(data.len());
                let mut pieces = data.clone();
                let (a, rest) = pieces.split_at_mut(cut1);
                let (b, c) = rest.split_at_mut(cut2 - cut1);
                apply_mask(a, key, 0);
                apply_mask(b, key, cut1);
                apply_mask(c, key, cut2);
                assert_eq!(pieces, whole, "cuts {cut1} {cut2}");
            }
        }
    }
}
