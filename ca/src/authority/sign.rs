//! Leaf issuance: CSR signing, workload and serving certificates, and the leaf profile they share.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose,
    PublicKeyData, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::OffsetDateTime;

use super::{BACKDATE, CertificateAuthority};
use crate::csr;
use crate::error::CaError;
use crate::keys;
use crate::pem;
use crate::spiffe::Identity;

/// A signed leaf and what the log says about it.
pub(crate) struct Issued {
    pub chain: Vec<String>,
    pub serial: String,
}

impl CertificateAuthority {
    /// Validates a CSR (PEM) and signs it; `identity` is the one identity the leaf may carry (already
    /// authorized). Returns `[leaf, intermediates…, root bundle]`.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<Vec<String>, CaError> {
        let parsed = csr::parse(csr_pem)?;
        if parsed.identity != *identity {
            return Err(CaError::IdentityMismatch {
                requested: parsed.identity.to_string(),
                allowed: identity.to_string(),
            });
        }
        Ok(self.issue_leaf(identity, &parsed.public_key, ttl)?.chain)
    }

    /// Parses and checks a CSR without signing: returns the one SPIFFE identity it asks for.
    pub fn inspect_csr(csr_pem: &str) -> Result<Identity, CaError> {
        Ok(csr::parse(csr_pem)?.identity)
    }

    /// A fresh ECDSA P-256 key and a leaf for `identity`: (chain PEMs as `sign_csr`, PKCS#8 key PEM).
    pub fn issue_workload(
        &self,
        identity: &Identity,
        ttl: Duration,
    ) -> Result<(Vec<String>, String), CaError> {
        let key = keys::generate_p256().map_err(|e| CaError::crypto("generate a key", e))?;
        let issued = self.issue_leaf(identity, &key, ttl)?;
        Ok((issued.chain, key.serialize_pem()))
    }

    /// Serving certificate for the gRPC listener: (chain PEMs without the root, PKCS#8 key PEM), with
    /// the given DNS and IP SANs, EKU serverAuth.
    pub fn issue_serving(
        &self,
        dns: &[String],
        ips: &[IpAddr],
        ttl: Duration,
    ) -> Result<(Vec<String>, String), CaError> {
        if dns.is_empty() && ips.is_empty() {
            return Err(CaError::crypto(
                "issue the serving certificate",
                "no DNS name or IP address to put in it",
            ));
        }
        let mut sans = Vec::with_capacity(dns.len() + ips.len());
        for name in dns {
            let ia5 = name.as_str().try_into().map_err(|_| {
                CaError::crypto(
                    "issue the serving certificate",
                    format!("{name:?} is not a DNS name"),
                )
            })?;
            sans.push(SanType::DnsName(ia5));
        }
        sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        let key = keys::generate_p256().map_err(|e| CaError::crypto("generate a key", e))?;
        let mut params = self.leaf_params(ttl)?;
        params.0.subject_alt_names = sans;
        params.0.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .0
            .signed_by(&key, &self.issuer)
            .map_err(|e| CaError::crypto("issue the serving certificate", e))?;
        let mut chain = Vec::with_capacity(1 + self.intermediates_pem.len());
        chain.push(pem::encode("CERTIFICATE", cert.der()));
        chain.extend(self.intermediates_pem.iter().cloned());
        Ok((chain, key.serialize_pem()))
    }

    /// Signs a leaf for `identity` over `public_key`; the identity must be in this trust domain.
    pub(crate) fn issue_leaf(
        &self,
        identity: &Identity,
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<Issued, CaError> {
        if identity.trust_domain != self.trust_domain {
            return Err(CaError::WrongTrustDomain {
                identity: identity.to_string(),
                ca_trust_domain: self.trust_domain.clone(),
            });
        }
        let (mut params, serial) = self.leaf_params(ttl)?;
        let uri = identity
            .to_string()
            .try_into()
            .map_err(|_| CaError::crypto("sign", format!("{identity} is not an ASCII URI")))?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        let cert = params
            .signed_by(public_key, &self.issuer)
            .map_err(|e| CaError::crypto("sign the certificate", e))?;
        let mut chain = Vec::with_capacity(2 + self.intermediates_pem.len());
        chain.push(pem::encode("CERTIFICATE", cert.der()));
        chain.extend(self.intermediates_pem.iter().cloned());
        chain.push(self.root_bundle_pem.clone());
        Ok(Issued { chain, serial })
    }

    /// The leaf profile shared by workload and serving certificates, and the serial in hex.
    fn leaf_params(&self, ttl: Duration) -> Result<(CertificateParams, String), CaError> {
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        let now = OffsetDateTime::now_utc();
        let not_after = now
            .checked_add(time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX))
            .unwrap_or(self.issuer_not_after)
            .min(self.issuer_not_after);
        let (serial, serial_hex) = self.random_serial()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.not_before = now - BACKDATE;
        params.not_after = not_after;
        params.serial_number = Some(serial);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        Ok((params, serial_hex))
    }

    /// 128 random bits behind a 0x01 byte: positive, minimally encoded, 17 bytes.
    fn random_serial(&self) -> Result<(SerialNumber, String), CaError> {
        let mut bytes = [0u8; 17];
        bytes[0] = 1;
        self.rng.fill(&mut bytes[1..]).map_err(|_| {
            CaError::crypto("draw a serial number", "the system random source failed")
        })?;
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok((SerialNumber::from_slice(&bytes), hex))
    }
}
