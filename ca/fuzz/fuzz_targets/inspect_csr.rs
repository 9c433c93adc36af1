//! Fuzzes CSR parsing and checking (`CertificateAuthority::inspect_csr`): it must never panic, whatever
//! the caller sends. The first byte picks how the rest is used: as the PEM text itself, or as DER
//! wrapped in a well-formed `CERTIFICATE REQUEST` block (which reaches the ASN.1 parser and the
//! signature, SAN and key checks directly).

#![no_main]

use ambient_ca::CertificateAuthority;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(text) = std::str::from_utf8(rest) {
            let _ = CertificateAuthority::inspect_csr(text);
        }
    } else {
        let _ = CertificateAuthority::inspect_csr(&pem("CERTIFICATE REQUEST", rest));
    }
});

fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, b| acc << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
