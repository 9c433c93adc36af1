//! One encoded xDS resource: its name, its content hash (the version) and its protobuf bytes.
//!
//! Resources are encoded once when the index computes them; the body is reference-counted (`Bytes`) and
//! the name shared (`Arc<str>`), so cloning a resource for a push to many connections never re-encodes or
//! copies it.

use std::sync::Arc;

use bytes::Bytes;
use prost::Message;
use xxhash_rust::xxh64::xxh64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The xDS resource name (workload uid, `namespace/hostname`, or `namespace/name`).
    pub name: Arc<str>,
    /// xxHash64 of `body`: equal content gives equal versions on every replica.
    pub version: u64,
    /// The encoded message (`istio.workload.Address` or `istio.security.Authorization`).
    pub body: Bytes,
}

impl Resource {
    pub fn encode<M: Message>(name: Arc<str>, msg: &M) -> Resource {
        let body = Bytes::from(msg.encode_to_vec());
        Resource {
            name,
            version: xxh64(&body, 0),
            body,
        }
    }

    /// The version as sent on the wire: 16 lower-case hex digits.
    pub fn version_string(&self) -> String {
        format!("{:016x}", self.version)
    }
}
