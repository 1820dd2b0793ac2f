//! Newline-delimited input with a hard cap on line length.

use tokio::io::{AsyncRead, AsyncReadExt};

/// A line reader with a hard cap on line length whose buffer only grows while a line is
/// incomplete (most sessions hold no buffer at all between lines). Cancel-safe: state lives in
/// `self`, and a read that is cancelled took nothing.
pub(crate) struct LineReader<R> {
    inner: R,
    buffer: Vec<u8>,
    max: usize,
}

/// Why a session's input ended.
pub(crate) enum ReadEnd {
    Closed,
    TooLong,
    NotUtf8,
    Io(std::io::Error),
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Lines of at most `max` bytes from `inner`.
    pub(crate) fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buffer: Vec::new(),
            max,
        }
    }

    /// The next line, without its `\n` (or `\r\n`).
    pub(crate) async fn next_line(&mut self) -> Result<String, ReadEnd> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let rest = self.buffer.split_off(end + 1);
                let mut line = std::mem::replace(&mut self.buffer, rest);
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if self.buffer.is_empty() {
                    self.buffer = Vec::new();
                }
                return String::from_utf8(line).map_err(|_| ReadEnd::NotUtf8);
            }
            if self.buffer.len() >= self.max {
                return Err(ReadEnd::TooLong);
            }
            let mut chunk = [0u8; 2048];
            let want = chunk.len().min(self.max + 1 - self.buffer.len());
            match self.inner.read(&mut chunk[..want]).await {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(ReadEnd::Io(e)),
            }
        }
    }
}
