//! Private keys: generating ECDSA P-256 keys and reading CA keys in the forms operators have them.
//!
//! A CA key may be PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`) or PKCS#1 (`RSA PRIVATE KEY`, as in
//! istio's sample `cacerts`); SEC1 and PKCS#1 keys are wrapped into PKCS#8 in memory. Supported
//! algorithms are ECDSA P-256 and P-384 and RSA (signing with SHA-256). Keys this crate creates are
//! always ECDSA P-256. Nothing here ever formats key bytes into an error or a log line.

use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::pem;

/// A fresh ECDSA P-256 key.
pub(crate) fn generate_p256() -> Result<KeyPair, String> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())
}

/// Reads a private key from PEM text. The error says what is wrong without quoting the key.
pub(crate) fn key_from_pem(text: &str) -> Result<KeyPair, String> {
    if text.trim().is_empty() {
        return Err("the file is empty (an interrupted write?)".into());
    }
    let blocks = pem::parse(text)?;
    let keys: Vec<&pem::Block> = blocks
        .iter()
        .filter(|b| b.label.ends_with("PRIVATE KEY"))
        .collect();
    let block = match keys.as_slice() {
        [] => return Err("no PRIVATE KEY block found".into()),
        [one] => *one,
        more => {
            return Err(format!(
                "{} private key blocks found; exactly one is expected",
                more.len()
            ));
        }
    };
    let pkcs8 = match block.label.as_str() {
        "PRIVATE KEY" => block.der.clone(),
        "EC PRIVATE KEY" => {
            // The curve is not needed to wrap the key: try both curves we support.
            for curve in [OID_P256, OID_P384] {
                let wrapped = pkcs8_wrap(&[OID_EC_PUBLIC_KEY, curve], &block.der);
                if let Ok(k) = KeyPair::try_from(wrapped.as_slice()) {
                    return Ok(k);
                }
            }
            return Err(
                "EC PRIVATE KEY is not a P-256 or P-384 key with its public key included".into(),
            );
        }
        "RSA PRIVATE KEY" => pkcs8_wrap(&[OID_RSA_ENCRYPTION, DER_NULL], &block.der),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "the key is encrypted; decrypt it first (openssl pkcs8 -in KEY -out KEY.plain)"
                    .into(),
            );
        }
        other => return Err(format!("{other} blocks are not supported")),
    };
    KeyPair::try_from(pkcs8.as_slice()).map_err(|_| {
        "the key is not an ECDSA P-256/P-384 or RSA key in a form this CA can use (or it is damaged)"
            .to_string()
    })
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_RSA_ENCRYPTION: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];

/// `PrivateKeyInfo ::= SEQUENCE { version 0, AlgorithmIdentifier, OCTET STRING key }`.
fn pkcs8_wrap(alg_id_parts: &[&[u8]], key: &[u8]) -> Vec<u8> {
    let alg = tlv(0x30, &alg_id_parts.concat());
    let body = [&[0x02, 0x01, 0x00][..], &alg, &tlv(0x04, key)].concat();
    tlv(0x30, &body)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256};

    /// The SEC1 `ECPrivateKey` inside a PKCS#8 P-256/P-384 key made by ring.
    fn sec1_of(pkcs8: &[u8]) -> Vec<u8> {
        // ring's PKCS#8 is SEQUENCE { INTEGER 0, SEQUENCE alg, OCTET STRING sec1 } with short forms
        // except the outer length; find the OCTET STRING that follows the algorithm identifier.
        let alg_start = pkcs8.iter().position(|b| *b == 0x30).unwrap();
        let mut i = alg_start + 1;
        // skip outer sequence header
        i += if pkcs8[i] & 0x80 != 0 {
            1 + (pkcs8[i] & 0x7f) as usize
        } else {
            1
        };
        i += 3; // INTEGER 0
        let alg_len = pkcs8[i + 1] as usize;
        i += 2 + alg_len;
        assert_eq!(pkcs8[i], 0x04);
        let (len, hdr) = if pkcs8[i + 1] & 0x80 != 0 {
            let n = (pkcs8[i + 1] & 0x7f) as usize;
            let mut l = 0usize;
            for b in &pkcs8[i + 2..i + 2 + n] {
                l = l << 8 | *b as usize;
            }
            (l, 2 + n)
        } else {
            (pkcs8[i + 1] as usize, 2)
        };
        pkcs8[i + hdr..i + hdr + len].to_vec()
    }

    #[test]
    fn reads_pkcs8_and_sec1() {
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
            let k = KeyPair::generate_for(alg).unwrap();
            let back = key_from_pem(&k.serialize_pem()).unwrap();
            assert_eq!(back.public_key_raw(), k.public_key_raw());
            let sec1 = pem::encode("EC PRIVATE KEY", &sec1_of(k.serialized_der()));
            let back = key_from_pem(&sec1).unwrap();
            assert_eq!(back.public_key_raw(), k.public_key_raw());
            assert_eq!(back.algorithm(), alg);
        }
    }

    #[test]
    fn reads_pkcs1_rsa() {
        // Made with `openssl genrsa -traditional 2048`, like istio's sample cacerts keys.
        let text = include_str!("../tests/data/rsa2048-pkcs1.key.pem");
        assert!(text.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let k = key_from_pem(text).unwrap();
        assert_eq!(k.algorithm(), &PKCS_RSA_SHA256);
        // and the PKCS#8 form of the same key reads back to the same public key
        let again = key_from_pem(&k.serialize_pem()).unwrap();
        assert_eq!(again.public_key_raw(), k.public_key_raw());
    }

    #[test]
    fn clear_errors() {
        assert!(key_from_pem("").unwrap_err().contains("empty"));
        assert!(
            key_from_pem("hello")
                .unwrap_err()
                .contains("no PRIVATE KEY")
        );
        let k = generate_p256().unwrap();
        let pem_text = k.serialize_pem();
        let cut = &pem_text[..pem_text.len() / 2];
        assert!(key_from_pem(cut).unwrap_err().contains("not closed"));
        let junk = pem::encode("PRIVATE KEY", b"\x30\x03\x02\x01\x00");
        let err = key_from_pem(&junk).unwrap_err();
        assert!(err.contains("damaged"), "{err}");
        let enc = pem::encode("ENCRYPTED PRIVATE KEY", b"\x30\x00");
        assert!(key_from_pem(&enc).unwrap_err().contains("encrypted"));
        let two = format!("{pem_text}{pem_text}");
        assert!(key_from_pem(&two).unwrap_err().contains("exactly one"));
    }

    #[test]
    fn long_form_lengths() {
        let content = vec![7u8; 300];
        let t = tlv(0x04, &content);
        assert_eq!(&t[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(t.len(), 304);
    }
}
