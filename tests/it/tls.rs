//! TLS to PowerJob (rustls): an `https://` server whose certificate is signed by a
//! private CA is followed when `powerjob.ca_file` names that CA, and refused otherwise.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use common::{app_config, fast_sim, TestApp};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use powertail::sim::{JobScript, SimJob, Simulator};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

/// (CA PEM, server cert PEM, server key PEM) for 127.0.0.1.
fn certificates() -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

/// Serves `sim` over TLS on 127.0.0.1; returns the port.
async fn serve_tls(sim: Simulator, cert_pem: &str, key_pem: &str) -> u16 {
    let certs = rustls_pemfile_certs(cert_pem);
    let key = rustls::pki_types::PrivateKeyDer::try_from(pem_der(key_pem, "PRIVATE KEY")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let router = sim.router();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let service = TowerToHyperService::new(router);
                    let _ = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
                }
            });
        }
    });
    port
}

fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with(&format!("-----BEGIN {label}")))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64_decode(&body)
}

fn rustls_pemfile_certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    vec![rustls::pki_types::CertificateDer::from(pem_der(pem, "CERTIFICATE"))]
}

/// Standard base64 without padding checks (test helper).
fn base64_decode(s: &str) -> Vec<u8> {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = T.iter().position(|t| *t == c).expect("base64") as u32;
        buf = (buf << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

#[tokio::test]
async fn https_powerjob_with_a_private_ca() {
    let (ca_pem, cert_pem, key_pem) = certificates();
    let text: String = (0..120).map(|k| format!("[INFO] step {k}\n")).collect();
    let mut cfg = fast_sim();
    cfg.jobs = vec![SimJob {
        id: 12,
        name: "j".into(),
        job_params: String::new(),
        script: Some(Arc::new(JobScript::from_text(&text, 600, 5, "ok"))),
    }];
    let plain = Simulator::spawn(cfg).await.unwrap();
    let port = serve_tls(plain.sim.clone(), &cert_pem, &key_pem).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();

    // Without the CA the certificate is not trusted: PowerJob is unreachable.
    let mut config = app_config(&[format!("https://127.0.0.1:{port}")], "");
    let untrusted = TestApp::spawn_app(Simulator::spawn(fast_sim()).await.unwrap(), &config).await;
    let (status, body) = untrusted.get("/llm/logs?instanceId=677182124851200064").await;
    assert_eq!(status, 503, "{body}");

    config.powerjob.ca_file = Some(ca_file);
    let app = TestApp::spawn_app(plain, &config).await;
    let id = app.run_job(12);
    let follow = app.follow(id, Duration::from_secs(30)).await;
    assert_eq!(follow.lines, app.sim.with_core(|c, _| c.final_lines(id)));
}
