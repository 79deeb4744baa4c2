//! SPDY/3 header blocks, and their zlib compression primed with the protocol's dictionary.

use std::io;
use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::{invalid, read_u32};

/// The largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// The dictionary SPDY/3 header compression is primed with (its section 2.6.10.1): the
/// common header names, each with a 32-bit length before it, then common values.
pub(super) fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        const WORDS: &[&str] = &[
            "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
            "accept-encoding", "accept-language", "accept-ranges", "age", "allow",
            "authorization", "cache-control", "connection", "content-base",
            "content-encoding", "content-language", "content-length", "content-location",
            "content-md5", "content-range", "content-type", "date", "etag", "expect",
            "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
            "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards",
            "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
            "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade",
            "user-agent", "vary", "via", "warning", "www-authenticate", "method", "get",
            "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
            "keep-alive", "origin",
        ];
        const STATUS_CODES: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505";
        const PHRASES: &str = "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable";
        const DATES: &str = "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT";
        const VALUES: &str = "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
        let mut bytes = Vec::with_capacity(1424);
        for word in WORDS {
            bytes.extend_from_slice(&u32::try_from(word.len()).unwrap_or(0).to_be_bytes());
            bytes.extend_from_slice(word.as_bytes());
        }
        for tail in [STATUS_CODES, PHRASES, DATES, VALUES] {
            bytes.extend_from_slice(tail.as_bytes());
        }
        bytes
    })
}

/// A stream's headers, names in lower case; a name with several values holds them
/// separated by NUL, as SPDY sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(Vec<(String, String)>);

impl Headers {
    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.split('\0').next())
    }

    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_string()))
                .collect(),
        )
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut block = Vec::new();
        let length = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
        block.extend_from_slice(&length(self.0.len()));
        for (name, value) in &self.0 {
            block.extend_from_slice(&length(name.len()));
            block.extend_from_slice(name.as_bytes());
            block.extend_from_slice(&length(value.len()));
            block.extend_from_slice(value.as_bytes());
        }
        block
    }

    pub(super) fn decode(block: &[u8]) -> io::Result<Self> {
        let mut rest = block;
        let mut take = |n: usize| -> io::Result<&[u8]> {
            if rest.len() < n {
                return Err(invalid("truncated header block"));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        let count = read_u32(take(4)?);
        let mut pairs = Vec::new();
        for _ in 0..count {
            let length = read_u32(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(length)?).to_ascii_lowercase();
            let length = read_u32(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(length)?).into_owned();
            pairs.push((name, value));
        }
        Ok(Self(pairs))
    }
}

/// Header compression for one direction: one zlib stream for the whole session.
pub(super) struct Deflater(Compress);

impl Deflater {
    pub(super) fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        // A fresh stream always takes a dictionary.
        let _ = z.set_dictionary(dictionary());
        Self(z)
    }

    pub(super) fn deflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| invalid(format!("compressing headers: {e}")))?;
            consumed += usize::try_from(self.0.total_in() - before).unwrap_or(0);
            if consumed >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// Header decompression for one direction.
pub(super) struct Inflater(Decompress);

impl Inflater {
    pub(super) fn new() -> Self {
        Self(Decompress::new(true))
    }

    pub(super) fn inflate(&mut self, input: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let (before_in, before_out) = (self.0.total_in(), self.0.total_out());
            match self
                .0
                .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(error) if error.needs_dictionary().is_some() => {
                    self.0
                        .set_dictionary(dictionary())
                        .map_err(|e| invalid(format!("header dictionary: {e}")))?;
                }
                Err(error) => return Err(invalid(format!("decompressing headers: {error}"))),
            }
            consumed += usize::try_from(self.0.total_in() - before_in).unwrap_or(0);
            let progressed = self.0.total_in() != before_in || self.0.total_out() != before_out;
            if out.len() > MAX_HEADER_BLOCK {
                return Err(invalid("header block too large"));
            }
            if consumed >= input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if !progressed {
                // With room to write, zlib stops only at the end of its stream: bytes
                // after it would never be read (and looping on them never ends).
                if consumed < input.len() {
                    return Err(invalid(
                        "header block after the end of the compressed stream",
                    ));
                }
                return Ok(out);
            }
        }
    }
}
