//! Tests of the SPDY framing, header compression and session.

use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Session;
use super::client::{Client, Seen};
use super::headers::{Deflater, Headers, Inflater, dictionary};

#[test]
fn the_dictionary_is_spdy3s() {
    // Every zlib stream a SPDY/3 peer sends names its dictionary by this checksum.
    let mut z = Decompress::new(true);
    let mut peer = Compress::new(Compression::default(), true);
    peer.set_dictionary(dictionary()).unwrap();
    let mut compressed = Vec::with_capacity(64);
    peer.compress_vec(b"x", &mut compressed, FlushCompress::Sync)
        .unwrap();
    let mut out = Vec::with_capacity(64);
    let error = z
        .decompress_vec(&compressed, &mut out, FlushDecompress::Sync)
        .unwrap_err();
    assert_eq!(error.needs_dictionary(), Some(0xe3c6_a7c2));
    assert_eq!(dictionary().len(), 1423);
}

#[test]
fn header_blocks_survive_compression_across_frames() {
    let mut deflater = Deflater::new();
    let mut inflater = Inflater::new();
    for port in ["80", "8080", "443"] {
        let headers = Headers::from_pairs(&[("streamtype", "data"), ("port", port)]);
        let packed = deflater.deflate(&headers.encode()).unwrap();
        let unpacked = Headers::decode(&inflater.inflate(&packed).unwrap()).unwrap();
        assert_eq!(unpacked.get("port"), Some(port));
        assert_eq!(unpacked.get("StreamType"), Some("data"));
    }
    assert!(Headers::decode(&[0, 0, 0, 2, 0, 0]).is_err());
}

#[tokio::test]
async fn streams_are_replied_to_and_carry_data_both_ways() {
    let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
    let (session, mut streams) = Session::serve(server_io);
    let mut client = Client::new();
    let headers = Headers::from_pairs(&[("streamtype", "stdin")]);
    client_io
        .write_all(&client.syn_stream(1, false, &headers))
        .await
        .unwrap();
    client_io
        .write_all(&client.data(1, true, b"hello"))
        .await
        .unwrap();
    client_io.write_all(&client.ping(7)).await.unwrap();
    let mut stream = streams.recv().await.unwrap();
    assert_eq!(
        (stream.id, stream.headers.get("streamtype")),
        (1, Some("stdin"))
    );
    let mut got = String::new();
    stream.io.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "hello");
    stream.io.write_all(b"back").await.unwrap();
    drop(stream);
    assert_eq!(client.read(&mut client_io).await, Some(Seen::Reply(1)));
    assert_eq!(client.read(&mut client_io).await, Some(Seen::Ping(7)));
    assert_eq!(
        client.read(&mut client_io).await,
        Some(Seen::Data(1, false, b"back".to_vec()))
    );
    assert_eq!(
        client.read(&mut client_io).await,
        Some(Seen::Data(1, true, Vec::new()))
    );
    let closing = tokio::spawn(session.close());
    assert_eq!(client.read(&mut client_io).await, Some(Seen::GoAway));
    drop(client_io);
    closing.await.unwrap();
}

#[tokio::test]
async fn garbage_ends_the_session_without_panicking() {
    let (server_io, mut client_io) = tokio::io::duplex(1 << 16);
    let (session, _streams) = Session::serve(server_io);
    client_io
        .write_all(&[0x80, 0x02, 0, 1, 0, 0, 0, 0])
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), session.ended().cancelled())
        .await
        .unwrap();
}
