//! Fuzzing of what a SPDY peer sends: frames, compressed header blocks and the blocks
//! themselves. Whatever the bytes, reading them ends (no hang, no panic) in frames or
//! an `InvalidData` error, and a decompressed block stays within its bound.

use std::io;
use std::sync::mpsc;
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};
use proptest::prelude::*;

use super::frames::{FLAG_FIN, read_frame};
use super::headers::{Deflater, Headers, Inflater, dictionary};
use crate::fuzz_support::{corpus, fuzz};

/// How long one input may take before it counts as a hang.
const PATIENCE: Duration = Duration::from_secs(5);

/// Runs `work` on its own thread; a panic or a hang fails the case.
fn bounded<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TestCaseError> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match result.recv_timeout(PATIENCE) {
        Ok(value) => Ok(value),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(TestCaseError::fail(format!(
            "still running after {PATIENCE:?}"
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(TestCaseError::fail("panicked")),
    }
}

fn check_error(error: &io::Error) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            error.kind(),
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        ),
        "{:?}",
        error
    );
    prop_assert!(!error.to_string().is_empty());
    Ok(())
}

/// Inflates `blocks` in order on one session's stream, as the frame reader does.
fn check_inflate(blocks: Vec<Vec<u8>>) -> Result<(), TestCaseError> {
    let results = bounded(move || {
        let mut inflater = Inflater::new();
        blocks
            .iter()
            .map(|block| inflater.inflate(block))
            .collect::<Vec<_>>()
    })?;
    for result in results {
        match result {
            Ok(block) => {
                // The bound is checked once a round of output is in: at most one round over.
                prop_assert!(block.len() <= 2 << 20, "{} bytes", block.len());
                let _ = Headers::decode(&block);
            }
            Err(error) => {
                check_error(&error)?;
                break;
            }
        }
    }
    Ok(())
}

/// A header block as a peer compresses it, with the SPDY dictionary.
fn compressed(block: &[u8]) -> Vec<u8> {
    Deflater::new().deflate(block).expect("deflates")
}

/// A zlib stream with the SPDY dictionary, finished (a final block and a checksum).
fn finished(block: &[u8]) -> Vec<u8> {
    let mut z = Compress::new(Compression::default(), true);
    z.set_dictionary(dictionary()).expect("a dictionary");
    let mut out = Vec::with_capacity(block.len() + 1024);
    z.compress_vec(block, &mut out, FlushCompress::Finish)
        .expect("compresses");
    out
}

fn header_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        (
            prop_oneof![
                prop::sample::select(&["streamtype", "port", "requestid", "StreamType", ""][..])
                    .prop_map(str::to_string),
                any::<String>(),
            ],
            prop_oneof![
                prop::sample::select(&["data", "error", "stdin", "80", "0", "65536", "-1"][..])
                    .prop_map(str::to_string),
                any::<String>(),
            ],
        ),
        0..5,
    )
}

fn block_of(pairs: &[(String, String)]) -> Vec<u8> {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    Headers::from_pairs(&pairs).encode()
}

/// A block whose counts and lengths may lie.
fn raw_block() -> impl Strategy<Value = Vec<u8>> {
    let length = prop_oneof![0u32..16, Just(u32::MAX), Just(1 << 20), any::<u32>(),];
    (
        length.clone(),
        prop::collection::vec((length, prop::collection::vec(any::<u8>(), 0..16)), 0..4),
    )
        .prop_map(|(count, fields)| {
            let mut block = count.to_be_bytes().to_vec();
            for (length, bytes) in fields {
                block.extend_from_slice(&length.to_be_bytes());
                block.extend_from_slice(&bytes);
            }
            block
        })
}

/// A compressed block, spoilt: bits flipped, cut short, or followed by more bytes.
fn spoilt(block: Vec<u8>, edits: Vec<(usize, u8, u8)>) -> Vec<u8> {
    let mut block = block;
    for (at, kind, byte) in edits {
        if block.is_empty() {
            block.push(byte);
            continue;
        }
        let at = at % block.len();
        match kind % 4 {
            0 => block[at] ^= byte | 1,
            1 => block.truncate(at),
            2 => block.insert(at, byte),
            _ => block.push(byte),
        }
    }
    block
}

fn compressed_blocks() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let one = prop_oneof![
        3 => header_pairs().prop_map(|p| compressed(&block_of(&p))),
        1 => raw_block().prop_map(|b| compressed(&b)),
        2 => (
            header_pairs(),
            any::<bool>(),
            prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
        )
            .prop_map(|(pairs, finish, edits)| {
                let block = block_of(&pairs);
                let packed = if finish { finished(&block) } else { compressed(&block) };
                spoilt(packed, edits)
            }),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(one, 1..4)
}

#[test]
fn fuzz_spdy_header_blocks() {
    let seeds = corpus("spdy-header-block")
        .into_iter()
        .map(|(file, hex)| (file, decode_hex(&hex)));
    let input = prop_oneof![
        raw_block(),
        header_pairs().prop_map(|p| block_of(&p)),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    fuzz(file!(), seeds, input, |block| {
        match Headers::decode(&block) {
            Ok(headers) => {
                // What decodes encodes back to what decodes the same.
                prop_assert_eq!(Headers::decode(&headers.encode()).ok(), Some(headers));
            }
            Err(error) => check_error(&error)?,
        }
        Ok(())
    });
}

#[test]
fn fuzz_spdy_header_blocks_round_trip() {
    fuzz(file!(), [], header_pairs(), |pairs| {
        let mut inflater = Inflater::new();
        let unpacked = inflater
            .inflate(&compressed(&block_of(&pairs)))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let headers = Headers::decode(&unpacked).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for (name, _) in &pairs {
            // The first header of that name (whatever its ASCII case), to its first NUL.
            let first = pairs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| v.split('\0').next());
            prop_assert_eq!(headers.get(name), first);
        }
        Ok(())
    });
}

#[test]
fn fuzz_spdy_compressed_header_blocks() {
    let seeds = corpus("spdy-compressed")
        .into_iter()
        .map(|(file, hex)| (file, hex.lines().map(decode_hex).collect::<Vec<_>>()));
    fuzz(file!(), seeds, compressed_blocks(), check_inflate);
}

/// A frame: a control frame of any type, flags and length, or a data frame.
fn frame() -> impl Strategy<Value = Vec<u8>> {
    let control = (
        prop_oneof![Just(3u16), 0u16..4],
        prop_oneof![0u16..10, any::<u16>()],
        any::<u8>(),
        prop_oneof![
            header_pairs().prop_map(|p| {
                let mut payload = 1u32.to_be_bytes().to_vec();
                payload.extend_from_slice(&[0; 6]);
                payload.extend(compressed(&block_of(&p)));
                payload
            }),
            prop::collection::vec(any::<u8>(), 0..32),
        ],
        prop::option::weighted(0.1, any::<u32>()),
    )
        .prop_map(|(version, kind, flags, payload, lying_length)| {
            let mut frame = (0x8000 | version).to_be_bytes().to_vec();
            frame.extend_from_slice(&kind.to_be_bytes());
            frame.push(flags);
            let length = lying_length.unwrap_or(payload.len() as u32);
            frame.extend_from_slice(&length.to_be_bytes()[1..]);
            frame.extend(payload);
            frame
        });
    let data = (
        any::<u32>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..32),
    )
        .prop_map(|(stream, fin, data)| {
            let mut frame = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
            frame.push(if fin { FLAG_FIN } else { 0 });
            frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
            frame.extend(data);
            frame
        });
    prop_oneof![3 => control, 1 => data, 1 => prop::collection::vec(any::<u8>(), 0..24)]
}

/// Reads frames from `bytes` until the end or an error.
fn check_frames(bytes: Vec<u8>) -> Result<(), TestCaseError> {
    let outcome = bounded(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut reader = bytes.as_slice();
            let mut inflater = Inflater::new();
            loop {
                match read_frame(&mut reader, &mut inflater).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(error) => return Err(error),
                }
            }
        })
    })?;
    if let Err(error) = outcome {
        check_error(&error)?;
    }
    Ok(())
}

#[test]
fn fuzz_spdy_frames() {
    let seeds = corpus("spdy-frames")
        .into_iter()
        .map(|(file, hex)| (file, decode_hex(&hex)));
    let input = prop::collection::vec(frame(), 0..5).prop_map(|frames| frames.concat());
    fuzz(file!(), seeds, input, check_frames);
}

fn decode_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .map(|b| (b as char).to_digit(16).expect("a hex digit") as u8)
        .collect();
    digits
        .chunks(2)
        .map(|pair| pair[0] << 4 | pair.get(1).copied().unwrap_or(0))
        .collect()
}

#[test]
fn bytes_after_the_end_of_the_compressed_stream_are_refused() {
    // A finished zlib stream, then a byte: the inflater looped for ever on it.
    let block = block_of(&[("streamtype".into(), "data".into())]);
    let mut input = finished(&block);
    input.push(0);
    let outcome = bounded(move || Inflater::new().inflate(&input).map_err(|e| e.to_string()))
        .expect("inflating ends");
    assert_eq!(
        outcome,
        Err("header block after the end of the compressed stream".to_string())
    );
    // A later block on the finished stream is refused too.
    let mut inflater = Inflater::new();
    inflater.inflate(&finished(&block)).unwrap();
    let later = bounded(move || inflater.inflate(&compressed(&block)).is_err()).unwrap();
    assert!(later);
}
