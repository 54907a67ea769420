//! A part produced inside this process: an async task writes its bytes
//! into a small bounded channel and the encoder's blocking thread reads
//! them as a `Read`, so a slow destination slows the task (backpressure,
//! as a tool's pipe does) and memory stays at a few chunks.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::SourceError;

const DEPTH: usize = 8;
/// Writes are batched into chunks about this big.
pub const CHUNK: usize = 256 * 1024;

type Body = Pin<Box<dyn Future<Output = Result<(), SourceError>> + Send>>;

/// Where a task writes its part; batches small writes into chunks.
pub struct Sink {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Sink {
    /// Appends `data`; sends a chunk when one is full. Fails when the
    /// reader is gone (the backup stopped).
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SourceError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends what is buffered; the task calls it before it ends.
    pub async fn flush(&mut self) -> Result<(), SourceError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .send(chunk)
            .await
            .map_err(|_| SourceError::Refused("the backup stopped reading this part".into()))
    }
}

/// A task not started yet: given its sink, it produces the part's bytes.
pub struct Task {
    make: Box<dyn FnOnce(Sink) -> Body + Send>,
}

impl Task {
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: FnOnce(Sink) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), SourceError>> + Send + 'static,
    {
        Task {
            make: Box::new(move |sink| Box::pin(f(sink))),
        }
    }

    /// Starts the task on the runtime; returns it and the reading end.
    pub fn spawn(self) -> (JoinHandle<Result<(), SourceError>>, ChannelReader) {
        let (tx, rx) = mpsc::channel(DEPTH);
        let sink = Sink {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let body = (self.make)(sink);
        (
            tokio::spawn(body),
            ChannelReader {
                rx,
                current: Bytes::new(),
            },
        )
    }
}

/// The reading end, for a blocking thread: end of input when the task
/// dropped its sink (whether it succeeded is its verdict's business).
pub struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread")]
    async fn a_tasks_bytes_arrive_in_order_and_its_verdict_is_kept() {
        let task = Task::new(|mut sink| async move {
            for i in 0..100_000u32 {
                sink.write(format!("{i}\n").as_bytes()).await?;
            }
            sink.flush().await?;
            Err(SourceError::Refused("listing failed at the end".into()))
        });
        let (handle, mut reader) = task.spawn();
        let text = tokio::task::spawn_blocking(move || {
            let mut s = String::new();
            reader.read_to_string(&mut s).unwrap();
            s
        })
        .await
        .unwrap();
        assert_eq!(text.lines().count(), 100_000);
        assert_eq!(text.lines().nth(99_999), Some("99999"));
        // The bytes looked complete; the verdict says they are not.
        assert!(handle.await.unwrap().is_err());
    }
}
