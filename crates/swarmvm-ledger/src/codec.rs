//! The ledger's records as compact typed bytes (format 4), not JSON: numbers little-endian,
//! hashes as their 32 bytes, text as `u32` length and UTF-8, an optional value as `0x00` or
//! `0x01` and the value, and each record led by its version byte (1). `docs/format.md`
//! ("Ledger file") lists the fields in order.

use swarmvm_primitives::{BundleId, Hash32};

use crate::error::{ReadError, corrupt};
use crate::record::{BundleRecord, Evidence, LogEntry, Outcome, Receipt};

/// The version byte every record starts with.
const VERSION: u8 = 1;

/// A record the ledger stores as bytes.
pub(crate) trait Stored: Sized {
    /// Appends the record's bytes.
    fn put(&self, out: &mut Writer);
    /// Reads the record's fields (after the version byte).
    fn take(r: &mut Reader<'_>) -> Result<Self, ReadError>;

    /// The record's bytes.
    fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer(vec![VERSION]);
        self.put(&mut w);
        w.0
    }

    /// The record in exactly `bytes`.
    fn from_bytes(bytes: &[u8]) -> Result<Self, ReadError> {
        let mut r = Reader(bytes);
        if r.u8()? != VERSION {
            return Err(corrupt("a stored record of an unknown version"));
        }
        let record = Self::take(&mut r)?;
        if !r.0.is_empty() {
            return Err(corrupt("bytes after a stored record"));
        }
        Ok(record)
    }
}

pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn hash(&mut self, h: &Hash32) {
        self.0.extend_from_slice(h.as_bytes());
    }
    fn text(&mut self, s: &str) {
        self.u32(u32::try_from(s.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(s.as_bytes());
    }
    fn option<T>(&mut self, v: Option<&T>, put: impl FnOnce(&mut Self, &T)) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                put(self, v);
            }
        }
    }
}

pub(crate) struct Reader<'b>(&'b [u8]);

impl<'b> Reader<'b> {
    fn bytes(&mut self, n: usize) -> Result<&'b [u8], ReadError> {
        if self.0.len() < n {
            return Err(corrupt("a truncated stored record"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ReadError> {
        Ok(self.bytes(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, ReadError> {
        let b: [u8; 4] = self.bytes(4)?.try_into().map_err(corrupt)?;
        Ok(u32::from_le_bytes(b))
    }
    fn u64(&mut self) -> Result<u64, ReadError> {
        let b: [u8; 8] = self.bytes(8)?.try_into().map_err(corrupt)?;
        Ok(u64::from_le_bytes(b))
    }
    fn usize(&mut self) -> Result<usize, ReadError> {
        usize::try_from(self.u64()?).map_err(corrupt)
    }
    fn hash(&mut self) -> Result<Hash32, ReadError> {
        Hash32::from_slice(self.bytes(32)?).map_err(corrupt)
    }
    fn text(&mut self) -> Result<String, ReadError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.bytes(n)?.to_vec()).map_err(|_| corrupt("stored text is not UTF-8"))
    }
    fn option<T>(
        &mut self,
        take: impl FnOnce(&mut Self) -> Result<T, ReadError>,
    ) -> Result<Option<T>, ReadError> {
        match self.u8()? {
            0 => Ok(None),
            1 => take(self).map(Some),
            _ => Err(corrupt("a bad option flag in a stored record")),
        }
    }
}

impl Stored for LogEntry {
    fn put(&self, w: &mut Writer) {
        w.u64(self.position);
        w.u8(match self.source.as_str() {
            "exec" => 0,
            _ => 1,
        });
        w.option(self.seq.as_ref(), |w, s| w.u64(*s));
        w.option(self.bundle.as_ref(), |w, b| w.hash(&b.0));
        for n in [self.registrations, self.contracts, self.applied, self.rejected] {
            w.u64(n as u64);
        }
        w.u64(self.checked_at);
        w.hash(&self.state_root);
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, ReadError> {
        Ok(Self {
            position: r.u64()?,
            source: match r.u8()? {
                0 => "exec".into(),
                1 => "bundle".into(),
                _ => return Err(corrupt("a log entry of an unknown source")),
            },
            seq: r.option(Reader::u64)?,
            bundle: r.option(|r| r.hash().map(BundleId))?,
            registrations: r.usize()?,
            contracts: r.usize()?,
            applied: r.usize()?,
            rejected: r.usize()?,
            checked_at: r.u64()?,
            state_root: r.hash()?,
        })
    }
}

impl Stored for Receipt {
    fn put(&self, w: &mut Writer) {
        w.u64(self.position);
        w.u32(self.index);
        w.hash(&self.contract);
        w.option(self.signer.as_ref(), |w, s| w.text(s));
        w.option(self.nonce.as_ref(), |w, n| w.u64(*n));
        w.u8(match self.status {
            Outcome::Applied => 0,
            Outcome::Rejected => 1,
        });
        w.option(self.reason.as_ref(), |w, s| w.text(s));
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, ReadError> {
        Ok(Self {
            position: r.u64()?,
            index: r.u32()?,
            contract: r.hash()?,
            signer: r.option(Reader::text)?,
            nonce: r.option(Reader::u64)?,
            status: match r.u8()? {
                0 => Outcome::Applied,
                1 => Outcome::Rejected,
                _ => return Err(corrupt("a receipt of an unknown status")),
            },
            reason: r.option(Reader::text)?,
        })
    }
}

impl Stored for BundleRecord {
    fn put(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.hash(&self.id.0);
        w.option(self.parent.as_ref(), |w, p| w.hash(&p.0));
        w.u64(self.issued_at);
        w.u64(self.position);
        w.text(&self.manifest);
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, ReadError> {
        Ok(Self {
            seq: r.u64()?,
            id: BundleId(r.hash()?),
            parent: r.option(|r| r.hash().map(BundleId))?,
            issued_at: r.u64()?,
            position: r.u64()?,
            manifest: r.text()?,
        })
    }
}

impl Stored for Evidence {
    fn put(&self, w: &mut Writer) {
        w.u64(self.seq);
        w.hash(&self.kept.0);
        w.hash(&self.other.0);
        w.text(&self.kept_manifest);
        w.text(&self.other_manifest);
        w.u64(self.seen_at);
    }

    fn take(r: &mut Reader<'_>) -> Result<Self, ReadError> {
        Ok(Self {
            seq: r.u64()?,
            kept: BundleId(r.hash()?),
            other: BundleId(r.hash()?),
            kept_manifest: r.text()?,
            other_manifest: r.text()?,
            seen_at: r.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Stored + PartialEq + std::fmt::Debug>(record: &T) {
        let bytes = record.to_bytes();
        assert_eq!(&T::from_bytes(&bytes).unwrap(), record);
        for cut in 0..bytes.len() {
            assert!(T::from_bytes(&bytes[..cut]).is_err(), "{cut} bytes of {record:?}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(T::from_bytes(&longer).is_err());
    }

    #[test]
    fn records_round_trip_and_refuse_any_cut_or_extra_byte() {
        let h = Hash32::digest(b"x");
        round_trip(&LogEntry {
            position: 7,
            source: "bundle".into(),
            seq: Some(3),
            bundle: Some(BundleId(h)),
            registrations: 1,
            contracts: 1000,
            applied: 998,
            rejected: 2,
            checked_at: 1_700_000_000,
            state_root: h,
        });
        round_trip(&LogEntry {
            position: 1,
            source: "exec".into(),
            seq: None,
            bundle: None,
            registrations: 0,
            contracts: 0,
            applied: 0,
            rejected: 0,
            checked_at: 0,
            state_root: h,
        });
        round_trip(&Receipt::applied(4, h, Some("wallet".into()), Some(u64::MAX)));
        round_trip(&Receipt::rejected(0, h, None, None, "signer … was revoked".into()));
        round_trip(&BundleRecord {
            seq: 2,
            id: BundleId(h),
            parent: None,
            issued_at: 9,
            position: 2,
            manifest: "a.b.c".into(),
        });
        round_trip(&Evidence {
            seq: 2,
            kept: BundleId(h),
            other: BundleId(Hash32::digest(b"y")),
            kept_manifest: "k".into(),
            other_manifest: "o".into(),
            seen_at: 5,
        });
        // A receipt takes less than two thirds of its JSON (104 bytes against 160 here).
        let receipt = Receipt::applied(4, h, Some("W".repeat(43)), Some(17));
        let (bytes, json) = (receipt.to_bytes().len(), serde_json::to_vec(&receipt).unwrap().len());
        assert!(bytes * 3 < json * 2, "{bytes} bytes against {json} of JSON");
    }
}
