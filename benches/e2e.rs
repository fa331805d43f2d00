//! End to end over the unix datagram transport: dm-ulogd against an echo responder on the
//! same kind of socket, with the same client, in the same run.
//!
//! The echo responder answers each request at once with an empty payload and keeps no
//! state: the transport's limit. Workload: dm-raid1's write mix over 1, 64 and 1,024 core
//! logs with 1, 8 and 64 requests in flight. The two are measured in alternating rounds, and
//! beside their throughput stands each server's CPU time per request: when client and server
//! share the machine's two cores, the server's CPU cost is what sets the throughput ratio.
//! Prints a markdown table; `scripts/bench` collects it. Run: `cargo bench --bench e2e` (BENCH_SECONDS sets the time per
//! point, 2 by default).

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::path::Path;
use std::time::Duration;

use dm_ulog_actors::sim::load::Measurement;
use support::EchoAndDaemon;

/// Alternating rounds per point, for each of echo and dm-ulogd.
const ROUNDS: u32 = 5;

fn main() {
    support::serve_echo_if_asked();
    let measuring = support::measuring();
    let default_seconds = if measuring { 2.0 } else { 0.02 };
    let seconds: f64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default_seconds);
    let duration = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir().unwrap();

    let EchoAndDaemon { echo, daemon, mut echo_client, mut daemon_client } =
        EchoAndDaemon::start(dir.path());
    println!("| logs | in flight | echo req/s | dm-ulogd req/s | ratio | echo p50 / p99 / p99.9 µs | dm-ulogd p50 / p99 / p99.9 µs | p99 ratio | server CPU µs per request, echo / dm-ulogd |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut points = Vec::new();
    let mut worst_throughput = f64::MAX;
    let mut worst_p99 = 0f64;
    for logs in [1usize, 64, 1024] {
        let echo_logs = echo_client.create_core_logs(&format!("e{logs}"), logs, 10_000).unwrap();
        let daemon_logs =
            daemon_client.create_core_logs(&format!("d{logs}"), logs, 10_000).unwrap();
        for in_flight in [1usize, 8, 64] {
            // Warm both up, then measure them in alternating rounds, so that a change in the
            // machine's load falls on both alike.
            echo_client.run_mix(&echo_logs, in_flight, duration / 4).unwrap();
            daemon_client.run_mix(&daemon_logs, in_flight, duration / 4).unwrap();
            let (mut baseline, mut measured) = (None::<Measurement>, None::<Measurement>);
            let (mut echo_cpu, mut daemon_cpu) = (0, 0);
            for _ in 0..ROUNDS {
                let before = echo.cpu_ns();
                let round = echo_client.run_mix(&echo_logs, in_flight, duration / ROUNDS).unwrap();
                echo_cpu += echo.cpu_ns() - before;
                absorb(&mut baseline, round);
                let before = daemon.cpu_ns();
                let round =
                    daemon_client.run_mix(&daemon_logs, in_flight, duration / ROUNDS).unwrap();
                daemon_cpu += daemon.cpu_ns() - before;
                absorb(&mut measured, round);
            }
            let (baseline, measured) = (baseline.unwrap(), measured.unwrap());
            let echo_cpu = cpu_us_per_request(echo_cpu, &baseline);
            let daemon_cpu = cpu_us_per_request(daemon_cpu, &measured);
            assert_eq!(measured.errors, 0, "dm-ulogd answered with errors");
            let throughput = measured.per_second() / baseline.per_second();
            let p99 = measured.quantile_us(0.99) / baseline.quantile_us(0.99);
            worst_throughput = worst_throughput.min(throughput);
            points.push(Point { logs, in_flight, echo: baseline.clone(), ours: measured.clone() });
            worst_p99 = worst_p99.max(p99);
            println!(
                "| {logs} | {in_flight} | {:.0} | {:.0} | {throughput:.2} | {} | {} | {p99:.2} | {echo_cpu:.2} / {daemon_cpu:.2} |",
                baseline.per_second(),
                measured.per_second(),
                quantiles(&baseline),
                quantiles(&measured),
            );
        }
    }
    println!();
    println!("worst throughput ratio {worst_throughput:.2} (target >= 0.8), worst p99 ratio {worst_p99:.2} (target <= 2)");
    if measuring {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/e2e.png");
        match plot(&points, &path) {
            Ok(()) => println!("\n![dm-ulogd against the echo responder](e2e.png)"),
            Err(error) => eprintln!("no plot: {error}"),
        }
    }
    drop((echo, daemon));
}

struct Point {
    logs: usize,
    in_flight: usize,
    echo: Measurement,
    ours: Measurement,
}

/// Requests per second and p99 latency at every point, echo beside dm-ulogd.
fn plot(points: &[Point], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let font = std::fs::read("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
        .map_err(|e| format!("DejaVuSans.ttf (package fonts-dejavu-core): {e}"))?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| "the font does not load")?;
    let root = BitMapBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 2));
    let label =
        |i: usize| points.get(i).map_or(String::new(), |p| format!("{}/{}", p.logs, p.in_flight));
    type Metric = fn(&Measurement) -> f64;
    let metrics: [(&str, Metric); 2] =
        [("requests per second", |m| m.per_second()), ("p99 latency, µs", |m| m.quantile_us(0.99))];
    for (panel, (title, metric)) in panels.iter().zip(metrics) {
        let top =
            points.iter().flat_map(|p| [metric(&p.echo), metric(&p.ours)]).fold(0.0, f64::max)
                * 1.1;
        let mut chart = ChartBuilder::on(panel)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0usize..points.len().saturating_sub(1), 0.0..top)?;
        chart
            .configure_mesh()
            .x_labels(points.len())
            .x_label_formatter(&|i| label(*i))
            .x_desc("logs / requests in flight")
            .draw()?;
        for (name, color, pick) in [
            ("echo responder", BLUE, (|p: &Point| &p.echo) as fn(&Point) -> &Measurement),
            ("dm-ulogd", RED, |p: &Point| &p.ours),
        ] {
            chart
                .draw_series(LineSeries::new(
                    points.iter().enumerate().map(|(i, p)| (i, metric(pick(p)))),
                    color.stroke_width(2),
                ))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn absorb(total: &mut Option<Measurement>, round: Measurement) {
    match total {
        Some(total) => total.absorb(round),
        None => *total = Some(round),
    }
}

fn cpu_us_per_request(cpu_ns: u64, m: &Measurement) -> f64 {
    cpu_ns as f64 / 1e3 / m.requests as f64
}

fn quantiles(m: &Measurement) -> String {
    format!("{:.1} / {:.1} / {:.1}", m.quantile_us(0.5), m.quantile_us(0.99), m.quantile_us(0.999))
}
