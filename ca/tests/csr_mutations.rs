//! A deterministic, fuzz-style sweep over CSR parsing for every CI run (the coverage-guided target is
//! `ca/fuzz`, run with nightly): bit flips, truncations, insertions and PEM damage applied to real
//! CSRs must produce errors, never panics, and nothing damaged may pass as a different identity.

mod common;

use ambient_ca::CertificateAuthority;
use base64::Engine as _;
use common::*;

/// xorshift64*: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn wrap(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
}

fn der_of(pem: &str) -> Vec<u8> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn mutated_csrs_never_panic() {
    let app = "spiffe://cluster.local/ns/default/sa/app";
    let seeds = [
        ztunnel_csr(app).0,
        csr_with(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &[uri(app), dns("app.default.svc")],
        )
        .0,
        include_str!("data/rsa1024.csr.pem").to_string(),
    ];
    let iterations: usize = std::env::var("CSR_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let mut rng = Rng(0x00c0_ffee_1234_5678);
    let mut accepted = 0;
    for i in 0..iterations {
        let seed = &seeds[i % seeds.len()];
        let mut der = der_of(seed);
        let text = match rng.below(6) {
            0 => {
                // flip 1..4 bits anywhere
                for _ in 0..=rng.below(4) {
                    let at = rng.below(der.len());
                    der[at] ^= 1 << rng.below(8);
                }
                wrap(&der)
            }
            1 => {
                der.truncate(rng.below(der.len()));
                wrap(&der)
            }
            2 => {
                let at = rng.below(der.len());
                der.insert(at, rng.next() as u8);
                wrap(&der)
            }
            3 => {
                let at = rng.below(der.len());
                der.remove(at);
                wrap(&der)
            }
            4 => {
                // overwrite a length byte-ish position with an extreme value
                let at = rng.below(der.len());
                der[at] = [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff][rng.below(6)];
                wrap(&der)
            }
            _ => {
                // damage the PEM text itself
                let mut t = seed.clone().into_bytes();
                let at = rng.below(t.len());
                match rng.below(3) {
                    0 => t.truncate(at),
                    1 => t[at] = b"-\n =A*"[rng.below(6)],
                    _ => t.insert(at, b'\n'),
                }
                String::from_utf8_lossy(&t).into_owned()
            }
        };
        if let Ok(id) = CertificateAuthority::inspect_csr(&text) {
            // A mutation that still verifies can only be one that left the signed request intact.
            assert_eq!(id.to_string(), app, "{text}");
            accepted += 1;
        }
    }
    // Most mutations must be refused.
    assert!(
        accepted < iterations / 4,
        "{accepted} of {iterations} accepted"
    );
}
