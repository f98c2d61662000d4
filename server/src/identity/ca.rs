//! The server's certificate authority: an ed25519 CA, made on first start
//! and kept in the database so every replica issues under the same one.
//! It certifies short-term signing keys (rcgen), Fulcio-style.

use anyhow::{Context, Result};
use provenix_provenance::certificate_identity::{CertificateIdentity, FULCIO_ARC};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
    SerialNumber, SignatureAlgorithm, PKCS_ED25519,
};

use crate::db::Db;

pub struct CertificateAuthority {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// The CA's name; fixed, so the issuer can be rebuilt from the stored key.
fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "provenix");
    dn.push(DnType::CommonName, "provenix signing-key CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// A client's raw ed25519 public key, as rcgen wants to see it.
struct Ed25519PublicKey([u8; 32]);

impl PublicKeyData for Ed25519PublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

/// DER UTF8String (tag 12): what Fulcio's v2 extensions hold. By hand
/// because it is a tag, a length and the bytes.
fn der_utf8_string(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = vec![0x0c];
    let len = bytes.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let be = len.to_be_bytes();
        let skip = be.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (be.len() - skip) as u8);
        out.extend_from_slice(&be[skip..]);
    }
    out.extend_from_slice(bytes);
    out
}

fn to_time(unix: i64) -> Result<time::OffsetDateTime> {
    time::OffsetDateTime::from_unix_timestamp(unix).context("time out of range")
}

impl CertificateAuthority {
    /// Loads the CA, creating it if this is the first server to start.
    pub async fn load_or_create(db: &Db) -> Result<CertificateAuthority> {
        if db.certificate_authority().await?.is_none() {
            let key = KeyPair::generate_for(&PKCS_ED25519)?;
            let mut params = ca_params()?;
            let now = crate::clock::now();
            params.not_before = to_time(now - 3600)?;
            params.not_after = to_time(now + 20 * 365 * 86400)?;
            let cert = params.self_signed(&key)?;
            // Two replicas starting together: the first insert wins and
            // both read it back.
            db.insert_certificate_authority(&key.serialize_pem(), &cert.pem())
                .await?;
        }
        let (key_pem, cert_pem) = db
            .certificate_authority()
            .await?
            .context("certificate authority missing after creation")?;
        let key = KeyPair::from_pem(&key_pem).context("stored CA key is not valid")?;
        Ok(CertificateAuthority {
            cert_pem,
            issuer: Issuer::new(ca_params()?, key),
        })
    }

    /// A certificate for `public_key`, valid from `not_before` to `not_after`
    /// (Unix seconds), for code signing, naming the holder.
    pub fn issue(
        &self,
        public_key: [u8; 32],
        not_before: i64,
        not_after: i64,
        identity: &CertificateIdentity,
    ) -> Result<String> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.not_before = to_time(not_before)?;
        params.not_after = to_time(not_after)?;
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
        serial[0] &= 0x7f;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        params.use_authority_key_identifier_extension = true;
        params.subject_alt_names = vec![SanType::URI(
            identity
                .san_uri
                .clone()
                .try_into()
                .context("SAN URI is not ASCII")?,
        )];
        params.custom_extensions = identity
            .extensions
            .iter()
            .map(|(n, value)| {
                let mut oid = FULCIO_ARC.to_vec();
                oid.push(*n);
                CustomExtension::from_oid_content(&oid, der_utf8_string(value))
            })
            .collect();
        let cert = params.signed_by(&Ed25519PublicKey(public_key), &self.issuer)?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_strings_are_der() {
        assert_eq!(der_utf8_string("ab"), vec![0x0c, 2, b'a', b'b']);
        let long = "x".repeat(300);
        let der = der_utf8_string(&long);
        assert_eq!(&der[..4], &[0x0c, 0x82, 0x01, 0x2c]);
        assert_eq!(der.len(), 304);
    }

    async fn ca() -> (CertificateAuthority, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!(
            "sqlite://{}/db.sqlite?mode=rwc",
            dir.path().display()
        ))
        .await
        .unwrap();
        db.migrate().await.unwrap();
        (
            CertificateAuthority::load_or_create(&db).await.unwrap(),
            dir,
        )
    }

    /// What clients check offline (provenance::certificate_chain) holds
    /// for the certificates this CA issues, and only for them.
    #[tokio::test]
    async fn issued_certificates_chain_to_this_ca_and_no_other() {
        use provenix_provenance::certificate_chain::{check_chain, ChainError};
        let ((ours, _a), (theirs, _b)) = (ca().await, ca().await);
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]).verifying_key();
        let identity = CertificateIdentity {
            san_uri: "https://github.com/acme/app/.github/workflows/build.yml@refs/heads/main"
                .into(),
            extensions: vec![],
        };
        let now = crate::clock::now();
        let cert = ours
            .issue(key.to_bytes(), now, now + 900, &identity)
            .unwrap();
        let certified = check_chain(cert.as_bytes(), ours.cert_pem.as_bytes()).unwrap();
        assert_eq!(certified, key);
        assert_eq!(
            check_chain(cert.as_bytes(), theirs.cert_pem.as_bytes()).unwrap_err(),
            ChainError::BadSignature
        );
        let mut tampered = cert.clone().into_bytes();
        let mid = tampered.len() / 2;
        tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
        assert!(check_chain(&tampered, ours.cert_pem.as_bytes()).is_err());
        assert_eq!(
            check_chain(b"not a certificate", ours.cert_pem.as_bytes()).unwrap_err(),
            ChainError::NotACertificate("certificate")
        );
    }
}
