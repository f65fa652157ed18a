//! `healthcheck [ADDR] [--service NAME]`: asks a server's `grpc.health.v1.Health/Check` and exits
//! 0 when it answers SERVING, 1 otherwise (not serving, unreachable, timed out) — for Docker's
//! HEALTHCHECK and exec probes, where no grpcurl is at hand.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

#[derive(Debug, Parser)]
#[command(name = "healthcheck", about = "Exit 0 when an xlmc server's gRPC health check says SERVING")]
struct Args {
    /// The server's gRPC address.
    #[arg(default_value = "http://127.0.0.1:50051", env = "XLMC_HEALTHCHECK_ADDR")]
    addr: String,
    /// The service (or model name) to check; empty = the whole server.
    #[arg(long, default_value = "")]
    service: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3.0)]
    timeout: f64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let check = async {
        let endpoint = tonic::transport::Endpoint::from_shared(args.addr.clone()).map_err(|e| e.to_string())?;
        let mut client = HealthClient::new(endpoint.connect().await.map_err(|e| e.to_string())?);
        let reply = client
            .check(HealthCheckRequest { service: args.service.clone() })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok::<_, String>(reply.into_inner().status())
    };
    match tokio::time::timeout(Duration::from_secs_f64(args.timeout), check).await {
        Ok(Ok(ServingStatus::Serving)) => {
            println!("SERVING");
            ExitCode::SUCCESS
        }
        Ok(Ok(status)) => {
            println!("{}", status.as_str_name());
            ExitCode::FAILURE
        }
        Ok(Err(error)) => {
            eprintln!("healthcheck {}: {error}", args.addr);
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("healthcheck {}: no answer within {} s", args.addr, args.timeout);
            ExitCode::FAILURE
        }
    }
}
