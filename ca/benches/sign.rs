//! Signing throughput, measured in one run so the figures are comparable:
//! 1. raw ECDSA P-256 signatures/s (ring, over a 400-byte message, the size of a leaf's TBS), and
//!    verifications/s (every CSR's signature is checked before signing);
//! 2. `sign_csr` leaves/s (parse, signature check, build, sign, PEM) on 1 and 2 threads;
//! 3. `CreateCertificate` over TLS + gRPC on 127.0.0.1 with 64 concurrent clients, each on its own
//!    connection, server and clients in this process on a 2-worker runtime (so they share the cores).
//!
//! `cargo bench -p ambient-ca --bench sign` (set `SIGN_BENCH_SECS` to change the 3 s per measurement).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ambient_ca::{
    Authenticator, CaService, CaServiceConfig, CertificateAuthority, Identity, ServingTls,
    TokenFileAuthenticator, tls_incoming,
};
use ambient_proto::auth::IstioCertificateRequest;
use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint};

const CLIENTS: usize = 64;
const TD: &str = "cluster.local";

fn secs() -> Duration {
    Duration::from_secs_f64(
        std::env::var("SIGN_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    )
}

/// Runs `f` on `threads` threads for the measurement time; returns operations per second.
fn rate(threads: usize, f: impl Fn() + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..16 {
                        f();
                    }
                    n += 16;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
        std::thread::sleep(secs());
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn ztunnel_csr(identity: &str) -> String {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.try_into().unwrap())];
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn main() {
    // `SIGN_BENCH_ONLY=grpc` runs the gRPC measurement alone (for profiling).
    let only_grpc = std::env::var("SIGN_BENCH_ONLY").is_ok_and(|v| v == "grpc");
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let message = [0x5au8; 400];
    let sign = || {
        key.sign(&rng, &message).unwrap();
    };
    let (raw1, raw2) = if only_grpc {
        (f64::NAN, f64::NAN)
    } else {
        (rate(1, sign), rate(2, sign))
    };
    println!("raw ECDSA P-256 sign:       {raw1:>9.0}/s on 1 thread, {raw2:>9.0}/s on 2 threads");
    if !only_grpc {
        // What checking a CSR's signature costs, for comparison.
        use ring::signature::{ECDSA_P256_SHA256_ASN1, KeyPair as _, UnparsedPublicKey};
        let sig = key.sign(&rng, &message).unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref());
        let verify1 = rate(1, || public.verify(&message, sig.as_ref()).unwrap());
        println!("raw ECDSA P-256 verify:     {verify1:>9.0}/s on 1 thread");
    }

    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(CertificateAuthority::load_or_create_self_signed(dir.path(), TD).unwrap());
    let identity = Identity::new(TD, "default", "app");
    let csr = ztunnel_csr(&identity.to_string());
    let ttl = Duration::from_secs(86400);
    let leaf = || {
        ca.sign_csr(&csr, &identity, ttl).unwrap();
    };
    let (leaf1, leaf2) = if only_grpc {
        (f64::NAN, f64::NAN)
    } else {
        (rate(1, leaf), rate(2, leaf))
    };
    println!(
        "sign_csr (leaves):          {leaf1:>9.0}/s on 1 thread, {leaf2:>9.0}/s on 2 threads ({:.0}% of raw on 2)",
        100.0 * leaf2 / raw2
    );

    let grpc = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(grpc_rate(ca, dir.path()));
    println!(
        "CreateCertificate gRPC+TLS: {grpc:>9.0}/s with {CLIENTS} concurrent clients \
         ({:.0}% of raw sign on 2 threads, {:.0}% of raw sign on 1 thread)",
        100.0 * grpc / raw2,
        100.0 * grpc / raw1
    );
}

async fn grpc_rate(ca: Arc<CertificateAuthority>, dir: &std::path::Path) -> f64 {
    let tokens = dir.join("tokens.yaml");
    std::fs::write(
        &tokens,
        "bench: {namespace: default, serviceAccount: app}\n",
    )
    .unwrap();
    let authenticators: Vec<Box<dyn Authenticator>> = vec![Box::new(
        TokenFileAuthenticator::from_file(&tokens, TD).unwrap(),
    )];
    let svc = CaService::new(
        ca.clone(),
        authenticators,
        Arc::new(ambient_ca::NoPods),
        CaServiceConfig::default(),
    );
    let serving = ServingTls::new(ca.clone(), vec![], vec![], Duration::from_secs(3600)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tls_incoming(listener, serving.server_config());
    let server = tonic::transport::Server::builder().add_service(svc.clone().into_server());
    tokio::spawn(async move { server.serve_with_incoming(incoming).await });

    let mut roots = RootCertStore::empty();
    for r in ca.roots() {
        roots.add(r.clone()).unwrap();
    }
    let mut tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tls = Arc::new(tls);

    // CSRs are made before the clock starts: ztunnel makes them, not the CA.
    let csrs: Arc<Vec<String>> = Arc::new(
        (0..256)
            .map(|_| ztunnel_csr("spiffe://cluster.local/ns/default/sa/app"))
            .collect(),
    );
    let mut channels = Vec::new();
    for _ in 0..CLIENTS {
        channels.push(channel(addr, tls.clone()).await);
    }
    // Warm up every connection once.
    for ch in &channels {
        call(
            &mut IstioCertificateServiceClient::new(ch.clone()),
            &csrs[0],
        )
        .await;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (i, ch) in channels.into_iter().enumerate() {
        let stop = stop.clone();
        let done = done.clone();
        let csrs = csrs.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = IstioCertificateServiceClient::new(ch);
            let mut n = 0u64;
            let mut j = i;
            while !stop.load(Ordering::Relaxed) {
                call(&mut client, &csrs[j % csrs.len()]).await;
                j += 1;
                n += 1;
            }
            done.fetch_add(n, Ordering::Relaxed);
        }));
    }
    tokio::time::sleep(secs()).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let issued = done.load(Ordering::Relaxed);
    let m = svc.metrics();
    eprintln!(
        "  ({issued} certificates in {elapsed:.1} s; server-side mean {:?}, max {:?})",
        m.latency.mean(),
        m.latency.max
    );
    issued as f64 / elapsed
}

async fn call(client: &mut IstioCertificateServiceClient<Channel>, csr: &str) {
    let mut req = tonic::Request::new(IstioCertificateRequest {
        csr: csr.to_string(),
        validity_duration: 86400,
        metadata: None,
    });
    req.metadata_mut()
        .insert("authorization", "Bearer bench".parse().unwrap());
    let chain = client
        .create_certificate(req)
        .await
        .unwrap()
        .into_inner()
        .cert_chain;
    assert_eq!(chain.len(), 2);
}

async fn channel(addr: SocketAddr, tls: Arc<ClientConfig>) -> Channel {
    Endpoint::from_static("http://ca.test")
        .connect_with_connector(tower::service_fn(move |_| {
            let tls = tls.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let stream = TlsConnector::from(tls)
                    .connect(
                        ServerName::try_from("istiod.istio-system.svc").unwrap(),
                        tcp,
                    )
                    .await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap()
}
