//! CA benchmark: certificates per second over gRPC and TLS, next to the raw ECDSA P-256 sign rate of
//! the same machine in the same run.
//!
//! ```text
//! cargo bench -p ambient-control-plane --bench ca                 # 10 s of load, 64 clients
//! cargo bench -p ambient-control-plane --bench ca -- --seconds 30 --clients 64 --connections 8
//! ```
//!
//! The server is `ambientd serve` in process ([`Server::bind`] on 127.0.0.1, an empty config folder,
//! bearer-token authentication), with its TLS 1.3 serving certificate. The clients are tonic channels
//! over TLS (HTTP/2), a handful of connections shared by many concurrent callers, as node agents
//! multiplex their CSRs: client `i` uses connection `i % connections` and sends, one after the other,
//! pre-generated ztunnel-style CSRs (ECDSA P-256, empty subject, one critical URI SAN) for its own
//! identity with its own token. Clients and server share the process and its 2 cores, like a load
//! generator on the same small machine would, but run on separate runtimes (2 worker threads each),
//! so the CPU time of each side is read per thread and reported per certificate.
//!
//! Reported: certificates per second over the measured window (after a warm-up), call latency p50/p99,
//! the process's CPU use, and, for scale, what the signing alone costs: `ring`'s raw ECDSA P-256 sign
//! rate (one thread and two) and the CA's own `sign_csr` (CSR checks, certificate building, signing,
//! PEM) without gRPC or TLS.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) everything runs for a fraction of a second
//! as a smoke test.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ambient_ca::{CertificateAuthority, Identity};
use ambient_control_plane::serve::{AuthMethod, ServeConfig, Server};
use ambient_proto::auth::IstioCertificateRequest;
use ambient_proto::auth::istio_certificate_service_client::IstioCertificateServiceClient;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

struct Options {
    measure: Duration,
    warmup: Duration,
    raw: Duration,
    clients: usize,
    connections: usize,
    csrs_per_client: usize,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<f64>().ok())
    };
    let mut o = if bench {
        Options {
            measure: Duration::from_secs(10),
            warmup: Duration::from_secs(2),
            raw: Duration::from_secs(3),
            clients: 64,
            connections: 8,
            csrs_per_client: 16,
        }
    } else {
        Options {
            measure: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            raw: Duration::from_millis(100),
            clients: 8,
            connections: 2,
            csrs_per_client: 2,
        }
    };
    if let Some(s) = value("--seconds") {
        o.measure = Duration::from_secs_f64(s);
    }
    if let Some(n) = value("--clients") {
        o.clients = (n as usize).max(1);
    }
    if let Some(n) = value("--connections") {
        o.connections = (n as usize).max(1);
    }
    o
}

fn main() {
    let o = options();
    let dir = tempfile::tempdir().expect("temp dir");

    println!("# CA benchmark\n");
    println!(
        "{} clients over {} TLS connections, {:.1} s measured after {:.1} s of warm-up; {} CPUs\n",
        o.clients,
        o.connections,
        o.measure.as_secs_f64(),
        o.warmup.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // Raw signing first, on an idle machine. Every CSR also costs one signature verification (the
    // CSR's proof of possession), measured the same way.
    let raw_1 = raw_sign_rate(1, o.raw);
    let raw_2 = raw_sign_rate(2, o.raw);
    let verify_1 = raw_verify_rate(1, o.raw);
    let verify_2 = raw_verify_rate(2, o.raw);

    // One identity and token per client, and its CSRs, made before the clock starts.
    let identities: Vec<Identity> = (0..o.clients)
        .map(|i| Identity::new("cluster.local", "bench", format!("sa-{i}")))
        .collect();
    let tokens_file = dir.path().join("tokens.yaml");
    let tokens: String = identities
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "token-{i}: {{namespace: {}, serviceAccount: {}}}\n",
                id.namespace, id.service_account
            )
        })
        .collect();
    std::fs::write(&tokens_file, tokens).expect("tokens file");
    let csrs: Vec<Vec<String>> = identities
        .iter()
        .map(|id| {
            (0..o.csrs_per_client)
                .map(|_| ztunnel_csr(&id.to_string()))
                .collect()
        })
        .collect();
    let config_dir = dir.path().join("config");
    std::fs::create_dir(&config_dir).expect("config dir");

    // Server and clients run on runtimes of their own (2 worker threads each, as many as cores), so
    // that the CPU each side uses can be read per thread; the OS shares the 2 cores between them.
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let server_rt = runtime(SERVER_THREADS);
    let client_rt = runtime(CLIENT_THREADS);
    let mut cfg = ServeConfig::new(&config_dir, dir.path().join("state"));
    cfg.grpc_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    cfg.auth = vec![AuthMethod::Tokens(tokens_file.clone())];
    let server = server_rt
        .block_on(Server::bind(cfg))
        .expect("server starts");
    let addr = server.grpc_addr();
    let root = server.root_bundle_pem().to_string();
    let ca = server.ca();

    let sign_csr_1 = sign_csr_rate(&ca, &identities[0], &csrs[0], 1, o.raw);
    let sign_csr_2 = sign_csr_rate(&ca, &identities[0], &csrs[0], 2, o.raw);

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server_rt.spawn(server.run(async {
        let _ = stopped.await;
    }));
    let grpc = client_rt.block_on(load(addr, &root, &csrs, &o));
    let _ = stop.send(());
    server_rt
        .block_on(serving)
        .expect("server task")
        .expect("server exits cleanly");

    println!("| measurement | per second |");
    println!("|---|---:|");
    println!("| raw ECDSA P-256 sign (`ring`), 1 thread | {raw_1:.0} |");
    println!("| raw ECDSA P-256 sign (`ring`), 2 threads | {raw_2:.0} |");
    println!("| raw ECDSA P-256 verify (`ring`), 1 thread | {verify_1:.0} |");
    println!("| raw ECDSA P-256 verify (`ring`), 2 threads | {verify_2:.0} |");
    println!(
        "| one verify + one sign (bound for any CSR signer), 2 threads | {:.0} |",
        1.0 / (1.0 / raw_2 + 1.0 / verify_2)
    );
    println!("| CA `sign_csr` in process, 1 thread | {sign_csr_1:.0} |");
    println!("| CA `sign_csr` in process, 2 threads | {sign_csr_2:.0} |");
    println!(
        "| **CreateCertificate over gRPC + TLS, {} clients** | **{:.0}** |",
        o.clients, grpc.rate
    );
    println!();
    println!("| gRPC run | value |");
    println!("|---|---:|");
    println!(
        "| certificates issued (measured window) | {} |",
        grpc.issued
    );
    println!("| errors | {} |", grpc.errors);
    println!("| latency p50 (ms) | {:.2} |", grpc.p50.as_secs_f64() * 1e3);
    println!("| latency p99 (ms) | {:.2} |", grpc.p99.as_secs_f64() * 1e3);
    println!("| latency max (ms) | {:.2} |", grpc.max.as_secs_f64() * 1e3);
    println!(
        "| process CPU during the window (cores) | {:.2} |",
        grpc.cores
    );
    let per_cert = |cpu: Duration| cpu.as_secs_f64() * 1e6 / grpc.issued.max(1) as f64;
    let server_us = per_cert(grpc.server_cpu);
    println!("| server threads: CPU per certificate (µs) | {server_us:.0} |");
    println!(
        "| client threads: CPU per certificate (µs) | {:.0} |",
        per_cert(grpc.client_cpu)
    );
    println!(
        "| of which CA `sign_csr` (µs, 1 thread) | {:.0} |",
        1e6 / sign_csr_1
    );
    println!(
        "| server capacity on 2 cores of its own (certificates/s) | {:.0} |",
        2e6 / server_us.max(1.0)
    );
    println!(
        "| rate / raw sign rate, 2 threads | {:.0}% |",
        100.0 * grpc.rate / raw_2
    );
    println!(
        "| rate / raw sign rate, 1 thread | {:.0}% |",
        100.0 * grpc.rate / raw_1
    );
    println!(
        "| rate / CA `sign_csr`, 2 threads | {:.0}% |",
        100.0 * grpc.rate / sign_csr_2
    );
    let target = grpc.rate >= 5000.0 && grpc.rate >= 0.3 * raw_2;
    println!(
        "\ntarget (>= 5,000/s and >= 30% of the 2-thread raw sign rate): {}",
        if target { "met" } else { "missed" }
    );
    assert_eq!(grpc.errors, 0, "every call succeeds");
}

/// Raw ECDSA P-256 signatures per second over a certificate-sized message, on `threads` threads.
fn raw_sign_rate(threads: usize, run: Duration) -> f64 {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = Arc::new(
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key"),
    );
    // About the size of a workload certificate's to-be-signed part.
    let message = [0x5au8; 420];
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let key = Arc::clone(&key);
                s.spawn(move || {
                    let rng = SystemRandom::new();
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        for _ in 0..64 {
                            std::hint::black_box(key.sign(&rng, &message).expect("sign"));
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / run.as_secs_f64()
}

/// Raw ECDSA P-256 signature verifications per second, on `threads` threads.
fn raw_verify_rate(threads: usize, run: Duration) -> f64 {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let message = [0x5au8; 420];
    let signature = key.sign(&rng, &message).expect("sign");
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let public = &public;
                let signature = signature.as_ref();
                s.spawn(move || {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        for _ in 0..64 {
                            public.verify(&message, signature).expect("verify");
                        }
                        n += 64;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / run.as_secs_f64()
}

/// The CA's `sign_csr` per second without gRPC or TLS, on `threads` threads.
fn sign_csr_rate(
    ca: &CertificateAuthority,
    identity: &Identity,
    csrs: &[String],
    threads: usize,
    run: Duration,
) -> f64 {
    let ttl = Duration::from_secs(86400);
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(move || {
                    let start = Instant::now();
                    let mut n = 0u64;
                    while start.elapsed() < run {
                        for csr in csrs {
                            std::hint::black_box(
                                ca.sign_csr(csr, identity, ttl).expect("sign_csr"),
                            );
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).sum()
    });
    total as f64 / run.as_secs_f64()
}

struct GrpcRun {
    rate: f64,
    /// CPU time of the server's and of the clients' runtime threads during the window.
    server_cpu: Duration,
    client_cpu: Duration,
    issued: usize,
    errors: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cores: f64,
}

async fn load(addr: SocketAddr, root_pem: &str, csrs: &[Vec<String>], o: &Options) -> GrpcRun {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(root_pem))
        .domain_name("localhost");
    let mut channels: Vec<Channel> = Vec::new();
    for _ in 0..o.connections {
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .expect("endpoint")
            .tls_config(tls.clone())
            .expect("TLS config")
            .connect()
            .await
            .expect("connect");
        channels.push(channel);
    }

    let measuring = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (i, client_csrs) in csrs.iter().enumerate() {
        let mut client = IstioCertificateServiceClient::new(channels[i % channels.len()].clone());
        let client_csrs = client_csrs.clone();
        let token: tonic::metadata::MetadataValue<_> =
            format!("Bearer token-{i}").parse().expect("header");
        let measuring = Arc::clone(&measuring);
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                let mut req = tonic::Request::new(IstioCertificateRequest {
                    csr: client_csrs[n % client_csrs.len()].clone(),
                    validity_duration: 86400,
                    metadata: None,
                });
                req.metadata_mut().insert("authorization", token.clone());
                n += 1;
                let start = Instant::now();
                let res = client.create_certificate(req).await;
                let took = start.elapsed();
                if measuring.load(Ordering::Relaxed) && !done.load(Ordering::Relaxed) {
                    match res {
                        Ok(r) if r.get_ref().cert_chain.len() >= 2 => latencies.push(took),
                        Ok(_) | Err(_) => errors += 1,
                    }
                }
            }
            (latencies, errors)
        }));
    }

    tokio::time::sleep(o.warmup).await;
    let cpu_start = process_cpu();
    let server_start = threads_cpu(SERVER_THREADS);
    let client_start = threads_cpu(CLIENT_THREADS);
    let start = Instant::now();
    measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(o.measure).await;
    done.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_start);
    let server_cpu = threads_cpu(SERVER_THREADS).saturating_sub(server_start);
    let client_cpu = threads_cpu(CLIENT_THREADS).saturating_sub(client_start);

    let mut latencies = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await.expect("client task");
        latencies.extend(l);
        errors += e;
    }
    latencies.sort_unstable();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    GrpcRun {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        server_cpu,
        client_cpu,
        issued: latencies.len(),
        errors,
        p50: pick(0.50),
        p99: pick(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        cores: cpu.as_secs_f64() / elapsed.as_secs_f64(),
    }
}

/// Thread names of the two runtimes.
const SERVER_THREADS: &str = "ca-server";
const CLIENT_THREADS: &str = "ca-client";

/// CPU time (user + system) of this process so far, from `/proc/self/stat`; zero where unavailable.
fn process_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu(&stat))
        .map_or(Duration::ZERO, |(_, cpu)| cpu)
}

/// CPU time so far of this process's threads named `name`, from `/proc/self/task/*/stat`.
fn threads_cpu(name: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("stat")).ok())
        .filter_map(|stat| stat_cpu(&stat))
        .filter(|(comm, _)| comm == name)
        .map(|(_, cpu)| cpu)
        .sum()
}

/// `(comm, utime + stime)` of a `stat` line: the name is in parentheses (and may hold spaces); utime
/// and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
fn stat_cpu(stat: &str) -> Option<(String, Duration)> {
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_string();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    Some((comm, Duration::from_millis((ticks(11)? + ticks(12)?) * 10)))
}

/// A CSR as ztunnel makes it: fresh ECDSA P-256 key, empty subject, one critical URI SAN.
fn ztunnel_csr(identity: &str) -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from(identity).expect("URI"),
    )];
    params
        .serialize_request(&key)
        .expect("CSR")
        .pem()
        .expect("PEM")
}
