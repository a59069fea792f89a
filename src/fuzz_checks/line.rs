//! Fuzz properties of the line codec (`codec::line::next_line`), the framing of every line
//! connection and of `readyloop load`'s line modes.
//!
//! The first byte is the line limit (0..=63), the rest the stream. Checked: every result
//! stays inside its input; a line holds no `\n`, is within the limit and is exactly what a
//! plain split at `\n` (dropping one `\r` before it) gives; and feeding the stream a byte at
//! a time into a buffer that keeps its unconsumed tail (as the loop does) yields the same
//! lines, the same verdict and the same tail as feeding it whole.

use super::parameter;
use crate::codec::line::{next_line, LineTooLong};

/// What a stream came to: its lines, and whether it ended in an error or in an unfinished
/// tail (the bytes kept).
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lines: Vec<Vec<u8>>,
    end: Result<Vec<u8>, LineTooLong>,
}

/// Takes every complete line off the front of `buf`, checking each result.
fn drain(buf: &mut Vec<u8>, max: usize, lines: &mut Vec<Vec<u8>>) -> Result<(), LineTooLong> {
    loop {
        let Some((line, used)) = next_line(buf, max)? else {
            return Ok(());
        };
        assert!(used <= buf.len(), "used {used} of {}", buf.len());
        assert!(
            line.len() <= max,
            "line of {} over the limit {max}",
            line.len()
        );
        assert!(!line.contains(&b'\n'));
        assert_eq!(
            buf.get(used - 1),
            Some(&b'\n'),
            "a line ends at its newline"
        );
        let terminator = used - line.len();
        assert!(terminator == 1 || (terminator == 2 && buf[line.len()] == b'\r'));
        assert_eq!(
            &buf[..line.len()],
            line,
            "the line is the front of the input"
        );
        lines.push(line.to_vec());
        buf.drain(..used);
    }
}

fn run(stream: &[u8], max: usize, piece: usize) -> Outcome {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    for chunk in stream.chunks(piece.max(1)) {
        buf.extend_from_slice(chunk);
        if let Err(e) = drain(&mut buf, max, &mut lines) {
            return Outcome { lines, end: Err(e) };
        }
    }
    Outcome {
        lines,
        end: Ok(buf),
    }
}

/// The plain reading of the format: split at `\n`, drop one `\r` before it.
fn reference_lines(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut lines: Vec<Vec<u8>> = stream.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    lines.pop(); // what follows the last newline is not a line (yet)
    for line in &mut lines {
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    lines
}

/// The line codec's properties for one fuzz input.
pub fn check(data: &[u8]) {
    let (p, stream) = parameter(data);
    let max = usize::from(p % 64);
    let whole = run(stream, max, stream.len());
    let bytewise = run(stream, max, 1);
    assert_eq!(whole, bytewise, "whole and byte at a time differ");
    let reference = reference_lines(stream);
    match &whole.end {
        Ok(tail) => {
            assert_eq!(whole.lines, reference, "lines differ from a plain split");
            assert!(!tail.contains(&b'\n'), "a complete line was left behind");
            assert!(
                tail.len() <= max + 1,
                "a tail of {} kept for limit {max}",
                tail.len()
            );
        }
        Err(LineTooLong) => {
            // Every line before the error was fine; the next one is too long.
            assert_eq!(whole.lines[..], reference[..whole.lines.len()]);
            let next = reference.get(whole.lines.len());
            assert!(
                next.map_or(true, |l| l.len() > max),
                "refused a line within the limit"
            );
        }
    }
}
