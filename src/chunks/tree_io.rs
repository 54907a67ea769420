//! Streaming a stored tree object: downloaded, authenticated segment by
//! segment ([`ObjectDecoder`] releases nothing before its tag verified),
//! parsed record by record. At the end the object's final segment, its end
//! record and its size and SHA-256 (as the MAC'd manifest lists them) are
//! checked. For a blocking thread.

use super::tree::{Entry, TreeParser};
use crate::catalog::ObjectEntry;
use crate::keys::Keyring;
use crate::pipeline::codec::ObjectDecoder;
use crate::store::{ObjectReader, Store};
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub struct TreeReader<'k> {
    rt: Handle,
    reader: ObjectReader,
    decoder: Option<ObjectDecoder<'k, Shared>>,
    shared: Shared,
    parser: TreeParser,
    object: ObjectEntry,
    done: bool,
    failed: bool,
}

impl<'k> TreeReader<'k> {
    pub fn open(
        rt: Handle,
        store: &Store,
        keys: &'k Keyring,
        object: &ObjectEntry,
    ) -> Result<Self, String> {
        let reader = rt
            .block_on(store.reader(&object.key))
            .map_err(|e| e.to_string())?;
        let shared = Shared::default();
        Ok(Self {
            rt,
            reader,
            decoder: Some(ObjectDecoder::new(keys, Some(&object.key), shared.clone())),
            shared,
            parser: TreeParser::default(),
            object: object.clone(),
            done: false,
            failed: false,
        })
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, String> {
        loop {
            if let Some(e) = self.parser.next_entry().map_err(str::to_string)? {
                return Ok(Some(e));
            }
            if self.done {
                return if self.parser.ended() {
                    Ok(None)
                } else {
                    Err("the tree ends without its end record".into())
                };
            }
            let chunk = self
                .rt
                .block_on(self.reader.next())
                .map_err(|e| e.to_string())?;
            let dec = self.decoder.as_mut().ok_or("used after a failure")?;
            match chunk {
                Some(c) => dec.push(&c).map_err(|e| e.to_string())?,
                None => {
                    let (_, digest) = self
                        .decoder
                        .take()
                        .expect("present")
                        .finish()
                        .map_err(|e| e.to_string())?;
                    if digest.size != self.object.size || digest.sha256 != self.object.sha256 {
                        return Err(format!(
                            "stored {} bytes with SHA-256 {}, the manifest says {} and {}",
                            digest.size, digest.sha256, self.object.size, self.object.sha256
                        ));
                    }
                    self.done = true;
                }
            }
            let bytes = std::mem::take(&mut *self.shared.0.lock().expect("not poisoned"));
            self.parser.feed(&bytes);
        }
    }
}

impl Iterator for TreeReader<'_> {
    type Item = Result<Entry, String>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.next_entry() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(format!("{}: {e}", self.object.key)))
            }
        }
    }
}
