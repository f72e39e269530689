//! The cluster PKI, made on first start with rcgen and reused after.
//!
//! One CA signs everything: the API server's serving certificate and the
//! client certificates (admin, later nodes and components). Files live in
//! `<data-dir>/server/tls/`, mode 0600. On start the CA is reused as is (a
//! missing CA key with a CA certificate present is an error: replacing a CA
//! that clients trust must be deliberate); a leaf certificate is reissued when
//! it is missing, damaged, not signed by the CA, within 90 days of expiry (as
//! k3s), or (the serving one) when the wanted SANs changed.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use crate::config::{ConfigError, ServerConfig};

const DAY: u64 = 24 * 60 * 60;
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * DAY);
const LEAF_LIFETIME: Duration = Duration::from_secs(365 * DAY);
/// Leaf certificates closer than this to expiry are reissued on start (k3s's rule).
const RENEW_BEFORE: Duration = Duration::from_secs(90 * DAY);
/// Certificates start a little in the past so clients with a lagging clock accept them.
const BACKDATE: Duration = Duration::from_secs(60 * 60);

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const SERVING_CERT: &str = "serving-kube-apiserver.crt";
const SERVING_KEY: &str = "serving-kube-apiserver.key";
const ADMIN_CERT: &str = "client-admin.crt";
const ADMIN_KEY: &str = "client-admin.key";

pub const ADMIN_USER: &str = "system:admin";
pub const MASTERS_GROUP: &str = "system:masters";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{cert} exists but its key {key} is missing; restore the key, or remove the whole directory {dir} to make a new CA (every issued certificate and kubeconfig then stops working)"
    )]
    CaKeyMissing {
        cert: PathBuf,
        key: PathBuf,
        dir: PathBuf,
    },
    #[error("cannot make a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot make a certificate: {0}")]
    Encode(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// What the serving certificate must be valid for, besides the fixed names
/// (localhost, loopback addresses, the `kubernetes` Service's DNS names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanInputs {
    /// The host name and the node name.
    pub hostnames: Vec<String>,
    /// The host's interface addresses.
    pub addresses: Vec<IpAddr>,
    /// The ClusterIP of the `kubernetes` Service.
    pub service_ip: IpAddr,
    /// `--tls-san` entries: DNS names or IPs.
    pub extra: Vec<String>,
}

impl SanInputs {
    /// Gather the host name and addresses for a server with this configuration.
    /// Addresses inside the pod and service networks are left out: they are not
    /// ways to reach the API, and the pod bridge coming and going would reissue
    /// the certificate.
    pub fn from_config(config: &ServerConfig) -> Result<SanInputs, ConfigError> {
        let service = config.service_network()?;
        let cluster = config.cluster_network()?;
        let mut hostnames = Vec::new();
        if let Ok(h) = nix::unistd::gethostname()
            && let Ok(h) = h.into_string()
        {
            hostnames.push(h.trim().to_ascii_lowercase());
        }
        hostnames.push(config.node_name.clone());
        let mut addresses: Vec<IpAddr> = host_addresses()
            .into_iter()
            .filter(|ip| !service.contains(*ip) && !cluster.contains(*ip))
            .collect();
        if !config.bind_address.is_unspecified() {
            addresses.push(config.bind_address);
        }
        Ok(SanInputs {
            hostnames,
            addresses,
            service_ip: config.first_service_ip()?,
            extra: config.tls_san.clone(),
        })
    }

    /// Every SAN wanted in the serving certificate, normalised (lowercase DNS
    /// names, canonical IP text), sorted and without duplicates.
    pub fn wanted(&self) -> BTreeSet<String> {
        let fixed = [
            "localhost",
            "127.0.0.1",
            "::1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let names = fixed
            .iter()
            .map(|s| s.to_string())
            .chain(self.hostnames.iter().cloned())
            .chain(self.extra.iter().cloned());
        let ips = self
            .addresses
            .iter()
            .chain([&self.service_ip])
            .map(|ip| ip.to_string());
        names.chain(ips).filter_map(|s| normalise_san(&s)).collect()
    }
}

fn normalise_san(s: &str) -> Option<String> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    Some(match s.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => s.to_ascii_lowercase(),
    })
}

/// The host's unicast interface addresses (link-local ones excluded: they
/// need a zone to be used and change with every interface).
pub fn host_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ifa in addrs {
        let Some(addr) = ifa.address else { continue };
        let ip = if let Some(v4) = addr.as_sockaddr_in() {
            IpAddr::V4(v4.ip())
        } else if let Some(v6) = addr.as_sockaddr_in6() {
            IpAddr::V6(v6.ip())
        } else {
            continue;
        };
        let link_local = match ip {
            IpAddr::V4(a) => a.is_link_local(),
            IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
        };
        if !link_local && !ip.is_multicast() && !ip.is_unspecified() && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// The loaded (or freshly made) cluster PKI.
pub struct Pki {
    ca: Ca,
    serving_pem: String,
    serving_key: KeyPair,
    admin_pem: String,
    admin_key_pem: String,
}

/// The CA and where its certificates are stored.
struct Ca {
    dir: PathBuf,
    pem: String,
    der: CertificateDer<'static>,
    key: KeyPair,
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.ca.dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Load the PKI from `dir` (`<data-dir>/server/tls`), making what is
    /// missing and reissuing leaves that need it (see the module docs).
    pub fn load_or_create(dir: &Path, sans: &SanInputs) -> Result<Pki, PkiError> {
        create_private_dir(dir)?;
        let (pem, key) = load_or_create_ca(dir)?;
        let der = pem_to_der(&dir.join(CA_CERT), &pem)?;
        let ca = Ca {
            dir: dir.to_path_buf(),
            pem,
            der,
            key,
        };

        let wanted = sans.wanted();
        let (serving_pem, serving_key_pem) = ca.reuse_or_issue(
            SERVING_CERT,
            SERVING_KEY,
            |cert| sans_of(cert) == wanted,
            |ca| ca.issue(serving_params(&wanted)?),
        )?;
        let serving_key = parse_key(&dir.join(SERVING_KEY), &serving_key_pem)?;
        let admin_subject = Some((ADMIN_USER.to_string(), vec![MASTERS_GROUP.to_string()]));
        let (admin_pem, admin_key_pem) = ca.reuse_or_issue(
            ADMIN_CERT,
            ADMIN_KEY,
            |cert| subject_of(cert) == admin_subject,
            |ca| ca.issue_client(ADMIN_USER, &[MASTERS_GROUP]),
        )?;
        Ok(Pki {
            ca,
            serving_pem,
            serving_key,
            admin_pem,
            admin_key_pem,
        })
    }

    /// The CA certificate, PEM (kubeconfigs' certificate-authority-data, agents' trust).
    pub fn ca_pem(&self) -> &str {
        &self.ca.pem
    }

    /// The admin client certificate and key, PEM (CN=system:admin, O=system:masters).
    pub fn admin_cert_pem(&self) -> &str {
        &self.admin_pem
    }

    pub fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }

    /// The admin kubeconfig for a server at `server_url` (see
    /// [`super::kubeconfig::admin_kubeconfig`]).
    pub fn admin_kubeconfig(&self, server_url: &str) -> String {
        super::kubeconfig::admin_kubeconfig(
            server_url,
            self.ca_pem(),
            self.admin_cert_pem(),
            self.admin_key_pem(),
        )
    }

    /// The serving certificate, PEM.
    pub fn serving_cert_pem(&self) -> &str {
        &self.serving_pem
    }

    /// The directory the PKI lives in.
    pub fn dir(&self) -> &Path {
        &self.ca.dir
    }

    /// A new client certificate signed by the cluster CA, for a user named
    /// `cn` in groups `orgs`; returns (certificate PEM, private key PEM).
    /// Valid for a year; nothing is stored.
    pub fn issue_client_cert(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
        self.ca.issue_client(cn, orgs)
    }

    /// The API server's TLS configuration: the serving certificate, ALPN h2 and
    /// http/1.1, and client certificates verified against the cluster CA but
    /// optional (anonymous requests reach the server, which answers 401 itself).
    pub fn server_tls_config(&self) -> Result<Arc<rustls::ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der.clone())?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()?;
        let serving_der = pem_to_der(&self.ca.dir.join(SERVING_CERT), &self.serving_pem)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.serving_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![serving_der], key)?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Ca {
    /// The stored pair if it can be reused, else a new one from `params`, stored.
    fn reuse_or_issue(
        &self,
        cert_file: &str,
        key_file: &str,
        fits: impl Fn(&X509Certificate) -> bool,
        issue: impl FnOnce(&Ca) -> Result<(String, String), PkiError>,
    ) -> Result<(String, String), PkiError> {
        if let Some(pair) = self.reusable_leaf(cert_file, key_file, fits)? {
            return Ok(pair);
        }
        let pair = issue(self)?;
        self.store_pair(cert_file, key_file, &pair)?;
        Ok(pair)
    }

    /// Sign `params` with a fresh key; returns (certificate PEM, key PEM).
    fn issue(&self, params: CertificateParams) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_ca_cert_der(&self.der, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for user `cn` in groups `orgs`. rcgen keeps one
    /// value per attribute type, but Kubernetes reads every O as a group, so the
    /// subject is written here (O..., then CN, as Go orders them) and the
    /// certificate re-signed.
    fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_ca_cert_der(&self.der, &self.key)?;
        let cert = client_params(cn)?.signed_by(&key, &issuer)?;
        let der = der::replace_subject(cert.der(), &der::subject(cn, orgs), &self.key)?;
        let pem = pem_encode("CERTIFICATE", &der);
        Ok((pem, key.serialize_pem()))
    }

    fn store_pair(
        &self,
        cert_file: &str,
        key_file: &str,
        (cert, key): &(String, String),
    ) -> Result<(), PkiError> {
        // The key first: a crash in between leaves a mismatched pair, which
        // the next start detects and reissues.
        write_private(&self.dir.join(key_file), key.as_bytes())?;
        write_private(&self.dir.join(cert_file), cert.as_bytes())
    }

    /// The stored pair, if it is whole, matches, is signed by our CA, is not
    /// near expiry and passes `fits`; None means "issue a new one".
    fn reusable_leaf(
        &self,
        cert_file: &str,
        key_file: &str,
        fits: impl Fn(&X509Certificate) -> bool,
    ) -> Result<Option<(String, String)>, PkiError> {
        let (Some(cert_pem), Some(key_pem)) = (
            read_optional(&self.dir.join(cert_file))?,
            read_optional(&self.dir.join(key_file))?,
        ) else {
            return Ok(None);
        };
        let Ok(key) = KeyPair::from_pem(&key_pem) else {
            return Ok(None);
        };
        let Ok(der) = pem_to_der(&self.dir.join(cert_file), &cert_pem) else {
            return Ok(None);
        };
        let Ok((_, cert)) = X509Certificate::from_der(&der) else {
            return Ok(None);
        };
        let Ok((_, ca)) = X509Certificate::from_der(&self.der) else {
            return Ok(None);
        };
        let reusable = cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw()
            && cert.verify_signature(Some(ca.public_key())).is_ok()
            && cert.validity().not_after.timestamp()
                > unix_now().saturating_add(RENEW_BEFORE.as_secs()) as i64
            && fits(&cert);
        Ok(reusable.then_some((cert_pem, key_pem)))
    }
}

/// Load the CA, or make one if there is none yet. Returns (certificate PEM, key).
fn load_or_create_ca(dir: &Path) -> Result<(String, KeyPair), PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    match (read_optional(&cert_path)?, read_optional(&key_path)?) {
        (Some(cert_pem), Some(key_pem)) => {
            let key = parse_key(&key_path, &key_pem)?;
            let der = pem_to_der(&cert_path, &cert_pem)?;
            let (_, cert) = X509Certificate::from_der(&der).map_err(|e| PkiError::Invalid {
                path: cert_path.clone(),
                reason: format!("not a certificate: {e}"),
            })?;
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(PkiError::Invalid {
                    path: key_path,
                    reason: format!("is not the key of {}", cert_path.display()),
                });
            }
            Ok((cert_pem, key))
        }
        (Some(_), None) => Err(PkiError::CaKeyMissing {
            cert: cert_path,
            key: key_path,
            dir: dir.to_path_buf(),
        }),
        // No CA certificate: nothing can have been signed yet, so a lone key
        // (a crash between the two writes) is simply replaced.
        (None, _) => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            params
                .distinguished_name
                .push(DnType::CommonName, format!("rk3s-ca@{}", unix_now()));
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            set_validity(&mut params, CA_LIFETIME);
            let cert = params.self_signed(&key)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            write_private(&cert_path, cert.pem().as_bytes())?;
            Ok((cert.pem(), key))
        }
    }
}

fn serving_params(sans: &BTreeSet<String>) -> Result<CertificateParams, PkiError> {
    let mut params = leaf_params("kube-apiserver", &[]);
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => Ok(SanType::DnsName(s.as_str().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn client_params(cn: &str) -> Result<CertificateParams, PkiError> {
    let mut params = leaf_params(cn, &[]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

fn leaf_params(cn: &str, orgs: &[&str]) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for org in orgs {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *org);
    }
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, LEAF_LIFETIME);
    params
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration) {
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let now = Duration::from_secs(unix_now());
    params.not_before = epoch + now.saturating_sub(BACKDATE);
    params.not_after = epoch + now + lifetime;
    // Random serials: two certificates from one CA must never share one.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The certificate's SANs, normalised as [`SanInputs::wanted`] does.
fn sans_of(cert: &X509Certificate) -> BTreeSet<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => normalise_san(dns),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|b| IpAddr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// (CN, [O...]) of a certificate's subject.
fn subject_of(cert: &X509Certificate) -> Option<(String, Vec<String>)> {
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let orgs = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Just enough DER to rewrite the subject of a certificate rcgen made.
mod der {
    use super::PkiError;
    use rcgen::{KeyPair, SigningKey};

    const SEQUENCE: u8 = 0x30;
    const SET: u8 = 0x31;
    const OID: u8 = 0x06;
    const UTF8_STRING: u8 = 0x0c;
    const BIT_STRING: u8 = 0x03;
    const VERSION_TAG: u8 = 0xa0;
    const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
    const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

    fn err(what: &str) -> PkiError {
        PkiError::Encode(format!("unexpected certificate encoding: {what}"))
    }

    pub(super) fn encode(tag: u8, content: &[u8]) -> Vec<u8> {
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

    /// One element split off the front of some DER.
    pub(super) struct Tlv<'a> {
        pub tag: u8,
        /// The element with its header.
        pub whole: &'a [u8],
        pub content: &'a [u8],
        /// What follows the element.
        pub rest: &'a [u8],
    }

    pub(super) fn next(input: &[u8]) -> Result<Tlv<'_>, PkiError> {
        let (&tag, rest) = input.split_first().ok_or_else(|| err("truncated"))?;
        let (&first, rest) = rest.split_first().ok_or_else(|| err("truncated"))?;
        let (len, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(err("bad length"));
            }
            (
                rest[..n]
                    .iter()
                    .fold(0usize, |acc, b| acc << 8 | *b as usize),
                &rest[n..],
            )
        };
        if rest.len() < len {
            return Err(err("truncated"));
        }
        let header = input.len() - rest.len();
        Ok(Tlv {
            tag,
            whole: &input[..header + len],
            content: &rest[..len],
            rest: &rest[len..],
        })
    }

    fn elements(mut content: &[u8]) -> Result<Vec<(u8, &[u8])>, PkiError> {
        let mut out = Vec::new();
        while !content.is_empty() {
            let tlv = next(content)?;
            out.push((tlv.tag, tlv.whole));
            content = tlv.rest;
        }
        Ok(out)
    }

    /// A Name of O attributes then a CN (left out when empty, as Go does).
    pub(super) fn subject(cn: &str, orgs: &[&str]) -> Vec<u8> {
        let attr = |oid: &[u8], value: &str| {
            let pair = [encode(OID, oid), encode(UTF8_STRING, value.as_bytes())].concat();
            encode(SET, &encode(SEQUENCE, &pair))
        };
        let mut rdns: Vec<u8> = orgs.iter().flat_map(|o| attr(OID_O, o)).collect();
        if !cn.is_empty() {
            rdns.extend(attr(OID_CN, cn));
        }
        encode(SEQUENCE, &rdns)
    }

    /// The certificate with its TBS subject replaced, signed again by `ca_key`.
    pub(super) fn replace_subject(
        cert: &[u8],
        subject: &[u8],
        ca_key: &KeyPair,
    ) -> Result<Vec<u8>, PkiError> {
        let outer = next(cert)?;
        if outer.tag != SEQUENCE || !outer.rest.is_empty() {
            return Err(err("not a certificate"));
        }
        let parts = elements(outer.content)?;
        let [(SEQUENCE, tbs), (SEQUENCE, alg), (BIT_STRING, _)] = parts.as_slice() else {
            return Err(err("certificate fields"));
        };
        let mut fields = elements(next(tbs)?.content)?;
        // version, serial, signature, issuer, validity, subject, ...
        let subject_at = if fields.first().is_some_and(|(t, _)| *t == VERSION_TAG) {
            5
        } else {
            4
        };
        match fields.get_mut(subject_at) {
            Some((SEQUENCE, field)) => *field = subject,
            _ => return Err(err("no subject")),
        }
        let tbs = encode(
            SEQUENCE,
            &fields
                .iter()
                .flat_map(|(_, f)| f.iter().copied())
                .collect::<Vec<u8>>(),
        );
        let signature = ca_key.sign(&tbs)?;
        let bits = encode(BIT_STRING, &[&[0u8][..], &signature].concat());
        Ok(encode(SEQUENCE, &[tbs.as_slice(), alg, &bits].concat()))
    }
}

fn parse_key(path: &Path, pem: &str) -> Result<KeyPair, PkiError> {
    KeyPair::from_pem(pem).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a private key: {e}"),
    })
}

fn pem_to_der(path: &Path, pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Invalid {
        path: path.to_path_buf(),
        reason: format!("not a PEM certificate: {e}"),
    })
}

fn read_optional(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn create_private_dir(dir: &Path) -> Result<(), PkiError> {
    let io = |source| PkiError::Io {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

/// Write a file readable by its owner only, atomically (temp file, fsync,
/// rename), so a crash never leaves half a key.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, contents, 0o600).map_err(|source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Replace `path` with `contents` at `mode` (not subject to the umask),
/// atomically, creating missing parent directories.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        std::fs::File::open(parent)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::authn::user_from_cert;
    use rustls_pki_types::ServerName;
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            TempDir(std::env::temp_dir().join(format!("rk3s-pki-{}", uuid::Uuid::new_v4())))
        }
        fn read(&self, name: &str) -> String {
            std::fs::read_to_string(self.0.join(name)).unwrap()
        }
        fn mode(&self, name: &str) -> u32 {
            std::fs::metadata(self.0.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn sans(extra: &[&str]) -> SanInputs {
        SanInputs {
            hostnames: vec!["Edge-Box".into()],
            addresses: vec!["192.168.7.20".parse().unwrap(), "fd00::20".parse().unwrap()],
            service_ip: "10.43.0.1".parse().unwrap(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn cert_sans(pem: &str) -> BTreeSet<String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        sans_of(&X509Certificate::from_der(&der).unwrap().1)
    }

    const FILES: [&str; 6] = [
        CA_CERT,
        CA_KEY,
        SERVING_CERT,
        SERVING_KEY,
        ADMIN_CERT,
        ADMIN_KEY,
    ];

    #[test]
    fn first_start_makes_everything_private() {
        let dir = TempDir::new();
        let pki = Pki::load_or_create(&dir.0, &sans(&["api.example.com", "203.0.113.5"])).unwrap();
        for f in FILES {
            assert_eq!(dir.mode(f), 0o600, "{f}");
        }
        assert_eq!(
            std::fs::metadata(&dir.0).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(pki.ca_pem(), dir.read(CA_CERT));

        let got = cert_sans(pki.serving_cert_pem());
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "edge-box",
            "192.168.7.20",
            "fd00::20",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.43.0.1",
            "api.example.com",
            "203.0.113.5",
        ] {
            assert!(got.contains(want), "{want} missing from {got:?}");
        }

        let ca_der = CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        assert!(ca.is_ca());
        let years = (ca.validity().not_after.timestamp() - ca.validity().not_before.timestamp())
            / (365 * DAY as i64);
        assert!(years >= 9, "the CA is long-lived: {years} years");
    }

    #[test]
    fn restart_reuses_and_only_reissues_what_changed() {
        let dir = TempDir::new();
        Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        let before: Vec<String> = FILES.iter().map(|f| dir.read(f)).collect();

        Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        let same: Vec<String> = FILES.iter().map(|f| dir.read(f)).collect();
        assert_eq!(
            before, same,
            "a restart with the same SANs reuses every file"
        );

        let pki = Pki::load_or_create(&dir.0, &sans(&["new.example"])).unwrap();
        assert!(cert_sans(pki.serving_cert_pem()).contains("new.example"));
        assert_ne!(dir.read(SERVING_CERT), before[2]);
        assert_ne!(dir.read(SERVING_KEY), before[3]);
        for (i, f) in FILES.iter().enumerate() {
            if ![SERVING_CERT, SERVING_KEY].contains(f) {
                assert_eq!(dir.read(f), before[i], "{f} must not change with the SANs");
            }
        }

        // Dropping the SAN reissues again: removed names stop being valid.
        let pki = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        assert!(!cert_sans(pki.serving_cert_pem()).contains("new.example"));
    }

    #[test]
    fn damaged_or_expiring_leaves_are_reissued() {
        let dir = TempDir::new();
        let pki = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        let admin_before = dir.read(ADMIN_CERT);

        // A key that does not match its certificate (a crash between writes).
        std::fs::write(
            dir.0.join(ADMIN_KEY),
            KeyPair::generate().unwrap().serialize_pem(),
        )
        .unwrap();
        let pki2 = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        assert_ne!(dir.read(ADMIN_CERT), admin_before);
        let key = KeyPair::from_pem(pki2.admin_key_pem()).unwrap();
        let der = CertificateDer::from_pem_slice(pki2.admin_cert_pem().as_bytes()).unwrap();
        assert_eq!(
            X509Certificate::from_der(&der)
                .unwrap()
                .1
                .public_key()
                .subject_public_key
                .data
                .as_ref(),
            key.public_key_raw()
        );

        // A serving certificate 30 days from expiry.
        let mut params = serving_params(&sans(&[]).wanted()).unwrap();
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix_now() + 30 * DAY);
        let pair = pki.ca.issue(params).unwrap();
        pki.ca.store_pair(SERVING_CERT, SERVING_KEY, &pair).unwrap();
        Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        assert_ne!(dir.read(SERVING_CERT), pair.0, "reissued before expiry");

        // A garbage certificate.
        std::fs::write(dir.0.join(SERVING_CERT), "junk").unwrap();
        let pki3 = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        assert!(
            pki3.serving_cert_pem()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }

    #[test]
    fn leaves_of_another_ca_are_reissued_and_a_lost_ca_key_is_an_error() {
        let dir = TempDir::new();
        Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        let other = TempDir::new();
        Pki::load_or_create(&other.0, &sans(&[])).unwrap();
        for f in [SERVING_CERT, SERVING_KEY] {
            std::fs::copy(other.0.join(f), dir.0.join(f)).unwrap();
        }
        let pki = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        assert_ne!(pki.serving_cert_pem(), other.read(SERVING_CERT));

        std::fs::remove_file(dir.0.join(CA_KEY)).unwrap();
        let err = Pki::load_or_create(&dir.0, &sans(&[])).unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMissing { .. }), "{err}");

        // A CA key that belongs to another CA certificate.
        std::fs::copy(other.0.join(CA_KEY), dir.0.join(CA_KEY)).unwrap();
        let err = Pki::load_or_create(&dir.0, &sans(&[])).unwrap_err();
        assert!(err.to_string().contains("is not the key of"), "{err}");
    }

    /// Connect a rustls client to the server config over an in-memory pipe;
    /// returns the ALPN protocol and the client certificate the server saw.
    async fn handshake(
        server: Arc<rustls::ServerConfig>,
        client: rustls::ClientConfig,
        name: &str,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), String> {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = ServerName::try_from(name.to_string()).unwrap();
        let server_side = tokio::spawn(async move {
            let mut tls = acceptor.accept(b).await.map_err(|e| e.to_string())?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            let (_, conn) = tls.get_ref();
            Ok::<_, String>((
                conn.alpn_protocol().map(<[u8]>::to_vec),
                conn.peer_certificates().map(|c| c[0].to_vec()),
            ))
        });
        let client_result = async {
            let mut tls = connector
                .connect(name, a)
                .await
                .map_err(|e| e.to_string())?;
            tls.write_all(b"ping").await.map_err(|e| e.to_string())?;
            tls.flush().await.map_err(|e| e.to_string())?;
            Ok::<_, String>(tls)
        }
        .await;
        let server_result = server_side.await.map_err(|e| e.to_string())?;
        let _keep_open = client_result?;
        server_result
    }

    fn client(pki: &Pki, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap())
            .unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config
    }

    #[tokio::test]
    async fn tls_serves_sans_and_authenticates_clients() {
        let dir = TempDir::new();
        let pki = Pki::load_or_create(&dir.0, &sans(&["api.example.com"])).unwrap();
        let server = pki.server_tls_config().unwrap();

        // The admin certificate authenticates as system:admin; the server
        // certificate verifies for every name clients use.
        for name in [
            "localhost",
            "127.0.0.1",
            "kubernetes.default.svc",
            "10.43.0.1",
            "api.example.com",
            "edge-box",
        ] {
            let identity = Some((pki.admin_cert_pem(), pki.admin_key_pem()));
            let (alpn, peer) = handshake(server.clone(), client(&pki, identity), name)
                .await
                .unwrap();
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{name}");
            let user = user_from_cert(&peer.expect("client certificate")).unwrap();
            assert_eq!(user.name, "system:admin");
            assert!(user.is_master());
        }

        // Anonymous clients get through TLS (the API answers 401 itself).
        let (_, peer) = handshake(server.clone(), client(&pki, None), "localhost")
            .await
            .unwrap();
        assert!(peer.is_none());

        // A name the certificate does not cover fails at the client.
        let err = handshake(server.clone(), client(&pki, None), "elsewhere.example")
            .await
            .unwrap_err();
        assert!(
            err.contains("certificate") || err.contains("NotValidForName"),
            "{err}"
        );

        // A client certificate from another CA is refused.
        let other_dir = TempDir::new();
        let other = Pki::load_or_create(&other_dir.0, &sans(&[])).unwrap();
        let (cert, key) = other
            .issue_client_cert("mallory", &["system:masters"])
            .unwrap();
        assert!(
            handshake(
                server.clone(),
                client(&pki, Some((&cert, &key))),
                "localhost"
            )
            .await
            .is_err()
        );

        // A freshly issued client certificate from ours is accepted.
        let (cert, key) = pki.issue_client_cert("system:kube-scheduler", &[]).unwrap();
        let (_, peer) = handshake(server, client(&pki, Some((&cert, &key))), "localhost")
            .await
            .unwrap();
        assert_eq!(
            user_from_cert(&peer.unwrap()).unwrap().name,
            "system:kube-scheduler"
        );
    }

    #[test]
    fn client_certs_carry_every_group() {
        let dir = TempDir::new();
        let pki = Pki::load_or_create(&dir.0, &sans(&[])).unwrap();
        let long_cn = format!(
            "system:serviceaccount:{}:{}",
            "n".repeat(63),
            "s".repeat(253)
        );
        let orgs = ["system:serviceaccounts", "system:serviceaccounts:ns", "g3"];
        let (pem, key_pem) = pki.issue_client_cert(&long_cn, &orgs).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        let (rest, cert) = X509Certificate::from_der(&der).unwrap();
        assert!(rest.is_empty());
        let orgs: Vec<String> = orgs.iter().map(|o| o.to_string()).collect();
        assert_eq!(subject_of(&cert), Some((long_cn, orgs)));
        let ca_der = CertificateDer::from_pem_slice(pki.ca_pem().as_bytes()).unwrap();
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        cert.verify_signature(Some(ca.public_key())).unwrap();
        assert_eq!(cert.issuer(), ca.subject());
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
    }

    #[test]
    fn der_lengths_round_trip() {
        for (len, header) in [
            (0usize, 2usize),
            (1, 2),
            (127, 2),
            (128, 3),
            (255, 3),
            (256, 4),
            (70_000, 5),
        ] {
            let content = vec![7u8; len];
            let enc = der::encode(0x04, &content);
            assert_eq!(enc.len(), header + len, "{len}");
            let t = der::next(&enc).unwrap();
            let (tag, whole, body, rest) = (t.tag, t.whole, t.content, t.rest);
            assert_eq!(
                (tag, whole.len(), body, rest.len()),
                (0x04, enc.len(), &content[..], 0)
            );
        }
        assert!(der::next(&[0x30, 0x05, 1, 2]).is_err(), "truncated");
        assert!(
            der::next(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err(),
            "oversized length"
        );
        let key = KeyPair::generate().unwrap();
        assert!(der::replace_subject(b"\x30\x00", &der::subject("a", &[]), &key).is_err());
    }

    #[test]
    fn wanted_sans_are_normalised() {
        let mut s = sans(&["API.Example.com", " 0:0:0:0:0:0:0:1 ", "api.example.com"]);
        s.hostnames.push("edge-box".into());
        let w = s.wanted();
        assert!(w.contains("api.example.com") && w.contains("::1") && w.contains("edge-box"));
        assert_eq!(
            w.iter().filter(|n| n.as_str() == "api.example.com").count(),
            1
        );
        assert!(!w.contains("API.Example.com"));
    }

    #[test]
    fn san_inputs_from_a_config() {
        let mut config = ServerConfig::new("/d".into(), "node-x");
        config.tls_san = vec!["api.example.com".into()];
        config.bind_address = "192.0.2.9".parse().unwrap();
        let s = SanInputs::from_config(&config).unwrap();
        assert_eq!(s.service_ip, "10.43.0.1".parse::<IpAddr>().unwrap());
        assert!(s.hostnames.contains(&"node-x".to_string()));
        assert!(s.addresses.contains(&"192.0.2.9".parse().unwrap()));
        assert!(s.addresses.contains(&"127.0.0.1".parse().unwrap()));
        let w = s.wanted();
        assert!(w.contains("api.example.com") && w.contains("10.43.0.1") && w.contains("node-x"));
        config.service_cidr = "nonsense".into();
        assert!(SanInputs::from_config(&config).is_err());
    }

    #[test]
    fn host_addresses_include_loopback_only_once() {
        let addrs = host_addresses();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
        let unique: BTreeSet<_> = addrs.iter().collect();
        assert_eq!(unique.len(), addrs.len());
        assert!(
            addrs
                .iter()
                .all(|a| !a.is_multicast() && !a.is_unspecified())
        );
    }
}
