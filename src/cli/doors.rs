//! The standards doors of `empi serve`: HL7 v2 over MLLP (`--hl7 ADDR`) and FHIR R4 over
//! HTTP(S) (`--fhir ADDR`), both off unless given. They serve the same application layer
//! as the gRPC listener, with its TLS files, its credentials and its audit trail, and the
//! same rule for plaintext: on a loopback address only, unless `--insecure-plaintext`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;

use empi::app::App;
use empi::auth::{tls::TlsFiles, AuthMode, Security};
use empi::fhir::http::{FhirServerConfig, BASE_PATH};
use empi::fhir::SourceSystem;
use empi::hl7::listener::Hl7Config;
use empi::hl7::Hd;

/// Options of the standards doors.
#[derive(Args, Debug, Default)]
pub struct DoorArgs {
    /// Serve HL7 v2 over MLLP on this address (e.g. 127.0.0.1:2575; port 0 picks one, printed
    /// as `hl7 listening on ADDR`); TLS with --tls-cert as for gRPC.
    #[arg(long, value_name = "ADDR")]
    pub hl7: Option<SocketAddr>,
    /// The credential (`empi token create --name`) an MLLP connection without a registered
    /// client certificate runs as: a submitter's sources are the PID-3 assigning authorities
    /// the feed may write.
    #[arg(long, value_name = "NAME", requires = "hl7")]
    pub hl7_as: Option<String>,
    /// The assigning authority of EUIDs in PIX and PDQ answers (HD namespace id).
    #[arg(long, value_name = "NAME", default_value = "EMPI", requires = "hl7")]
    pub hl7_euid_authority: String,
    /// Serve FHIR R4 over HTTP(S) on this address (e.g. 127.0.0.1:8081; port 0 picks one,
    /// printed as `fhir listening on ADDR`), under `/fhir`.
    #[arg(long, value_name = "ADDR")]
    pub fhir: Option<SocketAddr>,
    /// The base URL answers name (default: http(s)://ADDR/fhir).
    #[arg(long, value_name = "URL", requires = "fhir")]
    pub fhir_base_url: Option<String>,
    /// A source's identifier system URI, as SOURCE=URI (repeat for several; others are
    /// `urn:oid:` for OIDs, else `urn:empi:source:SOURCE`).
    #[arg(long, value_name = "SOURCE=URI", requires = "fhir")]
    pub fhir_system: Vec<String>,
}

/// The doors' tasks, until they stop.
pub struct Doors {
    tasks: Vec<(&'static str, tokio::task::JoinHandle<empi::Result<()>>)>,
}

impl Doors {
    /// Waits for every door to stop (after the shutdown signal).
    pub async fn finish(self) {
        for (name, task) in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("{name} listener failed: {e}"),
                Err(e) => tracing::error!("{name} listener task failed: {e}"),
            }
        }
    }
}

/// Refuses plaintext on a non-loopback address, as for gRPC.
fn check_plaintext(what: &str, addr: SocketAddr, tls: bool, insecure: bool) -> Result<()> {
    if !tls && !addr.ip().is_loopback() && !insecure {
        bail!(
            "refusing plaintext {what} on non-loopback address {addr}: give --tls-cert and \
             --tls-key, or --insecure-plaintext behind a TLS-terminating proxy"
        );
    }
    Ok(())
}

/// Binds and starts the doors `args` asks for, each stopping when `stop` says so.
///
/// # Errors
/// An address that cannot be bound or is refused plaintext; unusable TLS files or
/// `--fhir-system` values.
pub async fn start(
    args: &DoorArgs,
    security_args: &super::security::SecurityArgs,
    app: &Arc<App>,
    security: &Security,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<Doors> {
    let mut tasks = Vec::new();
    if args.hl7.is_none() && args.fhir.is_none() {
        return Ok(Doors { tasks });
    }
    let tls = |alpn: &[&[u8]]| -> Result<Option<Arc<rustls::ServerConfig>>> {
        match (&security_args.tls_cert, &security_args.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(
                TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: security_args.tls_client_ca.clone(),
                    require_client_cert: security_args.require_client_cert,
                }
                .rustls_config(alpn)?,
            )),
            _ => Ok(None),
        }
    };
    let insecure = security_args.insecure_plaintext;
    if let Some(addr) = args.hl7 {
        let tls = tls(&[])?;
        check_plaintext("HL7 v2", addr, tls.is_some(), insecure)?;
        if matches!(security.auth, AuthMode::Required(_))
            && args.hl7_as.is_none()
            && security_args.tls_client_ca.is_none()
        {
            tracing::warn!(
                "authentication required but the HL7 listener has neither --hl7-as nor \
                 client certificates (--tls-client-ca): every message is refused"
            );
        }
        let config = Hl7Config {
            euid_authority: Hd::named(&args.hl7_euid_authority),
            tls,
            auth: security.auth.clone(),
            bound: args.hl7_as.clone(),
            ..Hl7Config::default()
        };
        let listener = bind(addr).await?;
        println!("hl7 listening on {}", listener.local_addr()?);
        let (app, stop) = (Arc::clone(app), stopped(stop));
        tasks.push((
            "hl7",
            tokio::spawn(empi::hl7::listener::serve(listener, app, config, stop)),
        ));
    }
    if let Some(addr) = args.fhir {
        let tls = tls(&[b"http/1.1"])?;
        check_plaintext("FHIR", addr, tls.is_some(), insecure)?;
        let listener = bind(addr).await?;
        let local = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut config = FhirServerConfig {
            tls,
            auth: security.auth.clone(),
            ..FhirServerConfig::default()
        };
        config.fhir.base_url = args
            .fhir_base_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{local}{BASE_PATH}"));
        for s in &args.fhir_system {
            let (source, system) = s
                .split_once('=')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .with_context(|| "--fhir-system: expected SOURCE=URI")?;
            config.fhir.systems.push(SourceSystem {
                source: source.into(),
                system: system.into(),
            });
        }
        println!("fhir listening on {local}");
        let stop = stopped(stop);
        tasks.push((
            "fhir",
            tokio::spawn(empi::fhir::http::serve(
                listener,
                Arc::clone(app),
                config,
                stop,
            )),
        ));
    }
    Ok(Doors { tasks })
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))
}

/// A future completing once `stop` says so (or its sender is gone).
fn stopped(
    stop: &tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|s| *s).await;
    }
}
