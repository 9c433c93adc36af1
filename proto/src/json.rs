//! Rendering of encoded messages in the canonical protobuf JSON mapping
//! (lowerCamelCase keys, enums by name, bytes as base64, 64-bit integers as
//! strings, default values omitted), for debug endpoints and the CLI.

use prost_reflect::DynamicMessage;
use serde_json::Value;

use crate::descriptor_pool;

/// Why an encoded message could not be rendered as JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// The name (or type URL) does not name a message in [`descriptor_pool`].
    #[error(
        "unknown message type `{0}`: expected a type URL or full name such as \
         `type.googleapis.com/istio.workload.Address` or `istio.security.Authorization`"
    )]
    UnknownMessageType(String),
    /// The bytes are not a valid encoding of the message type.
    #[error("bytes are not a valid `{message}`: {source}")]
    Decode {
        message: String,
        #[source]
        source: prost::DecodeError,
    },
    /// The message decoded but has no JSON form, e.g. an `Any` whose payload
    /// type is not in the pool.
    #[error("`{message}` has no JSON form: {source}")]
    Serialize {
        message: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Decodes `encoded` as the message named by `type_url_or_full_name` and
/// renders it as protobuf JSON.
///
/// The name may be a full name (`istio.workload.Address`) or a type URL, of
/// which only the part after the last `/` counts.
pub fn to_json(type_url_or_full_name: &str, encoded: &[u8]) -> Result<Value, JsonError> {
    let full_name = type_url_or_full_name
        .rsplit('/')
        .next()
        .unwrap_or(type_url_or_full_name);
    let descriptor = descriptor_pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessageType(type_url_or_full_name.to_owned()))?;
    let message =
        DynamicMessage::decode(descriptor, encoded).map_err(|source| JsonError::Decode {
            message: full_name.to_owned(),
            source,
        })?;
    serde_json::to_value(&message).map_err(|source| JsonError::Serialize {
        message: full_name.to_owned(),
        source,
    })
}

/// [`to_json`] for an encoded `istio.workload.Address`.
pub fn address_to_json(encoded: &[u8]) -> Result<Value, JsonError> {
    to_json(crate::ADDRESS_TYPE_URL, encoded)
}

/// [`to_json`] for an encoded `istio.security.Authorization`.
pub fn authorization_to_json(encoded: &[u8]) -> Result<Value, JsonError> {
    to_json(crate::AUTHORIZATION_TYPE_URL, encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_full_names_and_type_urls() {
        assert_eq!(
            to_json("istio.workload.Address", &[]).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            to_json("type.googleapis.com/istio.security.Authorization", &[]).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            to_json("type.googleapis.com/istio.workload.Workload", &[]).unwrap(),
            serde_json::json!({})
        );
    }

    #[test]
    fn unknown_type_is_reported_by_the_name_given() {
        let err = to_json("type.googleapis.com/istio.workload.Nope", &[]).unwrap_err();
        assert!(
            matches!(&err, JsonError::UnknownMessageType(name) if name == "type.googleapis.com/istio.workload.Nope"),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_bytes_are_a_decode_error() {
        // Field 20 (uid), length-delimited, claims 5 bytes but carries 1.
        let err = address_to_json(&[0x0a, 0x04, 0xa2, 0x01, 0x05, b'x']).unwrap_err();
        assert!(matches!(err, JsonError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn any_with_unknown_payload_type_is_a_serialize_error() {
        // Workload.extensions[0].config = Any{type_url: "type.googleapis.com/x.Y"}.
        let any = prost_types::Any {
            type_url: "type.googleapis.com/x.Y".into(),
            value: vec![1, 2, 3],
        };
        let workload = crate::workload::Workload {
            extensions: vec![crate::workload::Extension {
                name: "e".into(),
                config: Some(any),
            }],
            ..Default::default()
        };
        let err = to_json(
            "istio.workload.Workload",
            &prost::Message::encode_to_vec(&workload),
        )
        .unwrap_err();
        assert!(matches!(err, JsonError::Serialize { .. }), "{err:?}");
    }
}
