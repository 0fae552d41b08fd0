//! Create-from-template latency: from `POST /api/v1/vms` until the create job reports the
//! QEMU process started (guest boot excluded), for a 100 MiB and a 2 GiB base image.
//!
//! Both templates hold real data (not sparse), so copying the base would show. Because VMs
//! get qcow2 overlays, the two must be within 20% of each other.
//!
//! Usage: `bench-create PORTHOLE_BINARY GUEST_DIR BENCHMARKS_MD [ROUNDS]`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use porthole_api::client::{Client, ImageSource, TemplateUpload};
use porthole_api::{CreateVmRequest, Health};
use porthole_bench::{Plane, Summary, ms, summarise, write_section};
use porthole_core::JobState;

const PASSWORD: &str = "bench-admin-password";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, binary, guest, report, rest @ ..] = args.as_slice() else {
        bail!("usage: bench-create PORTHOLE_BINARY GUEST_DIR BENCHMARKS_MD [ROUNDS]");
    };
    let rounds: usize = rest.first().map_or(Ok(20), |r| r.parse())?;
    let (binary, guest) = (PathBuf::from(binary), PathBuf::from(guest));
    let work = tempfile::Builder::new().prefix("phb").tempdir_in("/tmp")?;
    let plane = Plane::start(&binary, &guest, work.path(), PASSWORD, &[])?;
    let anonymous = Client::new(&plane.url)?;
    let client = anonymous
        .clone()
        .with_token(anonymous.login("admin", PASSWORD).await?.token);
    let health = client.health().await?;

    let sizes = [("base-100m", 100u64 << 20), ("base-2g", 2u64 << 30)];
    for (name, size) in sizes {
        let image = work.path().join(format!("{name}.raw"));
        write_filled(&image, size)?;
        let upload = TemplateUpload {
            name: name.into(),
            disk: ImageSource::File(image.clone()),
            kernel: Some(ImageSource::File(guest.join("vmlinuz"))),
            initrd: Some(ImageSource::File(guest.join("initrd.img"))),
            cmdline: Some(
                std::fs::read_to_string(guest.join("cmdline"))?
                    .trim()
                    .into(),
            ),
        };
        client
            .import_template(&upload, std::sync::Arc::new(|_| {}))
            .await?;
        std::fs::remove_file(&image)?;
    }

    // Warm up caches and the first-connection paths once per template.
    for (name, size) in sizes {
        create_once(&client, name, size, 0).await?;
    }
    // Rounds alternate between the two sizes, so both see the same machine conditions.
    let mut samples = vec![(Vec::new(), Vec::new()); sizes.len()];
    for round in 1..=rounds {
        for ((name, size), (client_side, server_side)) in sizes.iter().zip(&mut samples) {
            let (observed, job) = create_once(&client, name, *size, round).await?;
            client_side.push(observed);
            server_side.push(job);
        }
    }
    let results: Vec<_> = sizes
        .iter()
        .zip(&samples)
        .map(|((name, size), (client_side, server_side))| {
            (*name, *size, summarise(client_side), summarise(server_side))
        })
        .collect();
    let report_text = render(&results, rounds, &health);
    write_section(Path::new(report), "create-latency", &report_text)?;
    eprintln!("{report_text}");
    Ok(())
}

/// Creates one VM from `template`, measures it, and deletes it again. Returns the latency
/// seen by the client and the job's own duration as the plane recorded it.
async fn create_once(
    client: &Client,
    template: &str,
    size: u64,
    round: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let request = CreateVmRequest {
        disk_gib: size.div_ceil(1 << 30).max(1),
        ..CreateVmRequest::small(&format!("{template}-{round}"), template)
    };
    let started = Instant::now();
    let created = client.create_vm(&request).await?;
    let job = client
        .wait_for_job(created.job.id, Duration::from_millis(2), |_| {})
        .await?;
    let observed = started.elapsed();
    if job.state != JobState::Succeeded {
        bail!("create failed: {:?}", job.error);
    }
    let finished = job
        .finished_at
        .context("finished job without finished_at")?;
    let server = (finished - job.created_at).to_std().unwrap_or_default();
    let delete = client.delete_vm(created.vm.id).await?.job;
    client
        .wait_for_job(delete.id, Duration::from_millis(20), |_| {})
        .await?;
    Ok((observed, server))
}

/// Writes `size` bytes of incompressible data, so the base is really that large on disk.
fn write_filled(path: &Path, size: u64) -> anyhow::Result<()> {
    let mut file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(path)?);
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut block = vec![0u8; 1 << 20];
    for _ in 0..size / block.len() as u64 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

fn render(results: &[(&str, u64, Summary, Summary)], rounds: usize, health: &Health) -> String {
    let mut text = String::new();
    text.push_str("## Create from template\n\n");
    text.push_str(&format!(
        "From `POST /api/v1/vms` until the create job reports QEMU started (guest boot excluded), \
         {rounds} rounds per base image, alternating, after one warm-up, measured by `scripts/bench` \
         (`bench-create`). Base images are raw files full of incompressible data; the VM \
         gets a qcow2 overlay on them. Guests run under {}, porthole {}.\n\n",
        health.accel.to_uppercase(),
        health.version
    ));
    text.push_str("| base image | client p50 (ms) | client p90 (ms) | min (ms) | max (ms) | job p50, plane-side (ms) |\n");
    text.push_str("|---|---|---|---|---|---|\n");
    for (name, size, client, job) in results {
        text.push_str(&format!(
            "| {} ({} MiB) | {} | {} | {} | {} | {} |\n",
            name,
            size >> 20,
            ms(client.p50),
            ms(client.p90),
            ms(client.min),
            ms(client.max),
            ms(job.p50)
        ));
    }
    if let [small, large] = results {
        let ratio = large.2.p50.as_secs_f64() / small.2.p50.as_secs_f64();
        let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
        text.push_str(&format!(
            "\nRatio 2 GiB / 100 MiB at p50: **{ratio:.2}** (target within 20%: {}). \
             Target p50 ≤ 300 ms: {}.\n",
            verdict((0.8..=1.2).contains(&ratio)),
            verdict(small.2.p50.max(large.2.p50) <= Duration::from_millis(300)),
        ));
    }
    text
}
