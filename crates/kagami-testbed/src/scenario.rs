//! Rollouts on a bed, each measured the same way: the wall time of every
//! host's `ctr images pull`, the bytes the upstream sent on its link, the
//! bytes each node got from peers (kagami's own count), and a check that
//! every host that pulled holds every blob, matching its digest.
//!
//! Pulls are retried as kubelet retries them (a failed pull is tried again,
//! a few times, after a short pause); a retry is noted in the report.

use std::time::Duration;

use futures::future::join_all;

use crate::bed::Published;
use crate::host::Node;
use crate::{Bed, Error, HostResult, Report, Shape};

/// Pulls kubelet would make of one image before giving up, here.
const ATTEMPTS: usize = 3;
/// Pause before a retry (kubelet's back-off starts at 10 s; shorter here).
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// How often a scenario looks at the nodes while pulls run.
const POLL: Duration = Duration::from_millis(50);

/// What a scenario pulls: the image on the plain upstream.
fn reference(image: &Published) -> &str {
    &image.reference
}

/// A pull as kubelet makes it: tried again after a failure. The time is
/// that of the whole pull, retries included; failures are noted.
async fn pull(
    node: &Node,
    image: &Published,
    notes: &std::sync::Mutex<Vec<String>>,
) -> Result<f64, Error> {
    let started = std::time::Instant::now();
    let mut last = None;
    for attempt in 1..=ATTEMPTS {
        match node.pull(reference(image), None).await {
            Ok(_) => {
                if attempt > 1 {
                    notes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(format!("{} pulled at attempt {attempt}", node.name));
                }
                return Ok(started.elapsed().as_secs_f64());
            }
            Err(error) => {
                last = Some(error);
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Check("no pull attempt".to_owned())))
}

/// Counters at the start of a scenario, to report what it added.
struct Baseline {
    upstream: u64,
    peers: Vec<u64>,
}

impl Baseline {
    fn take(bed: &Bed) -> Result<Baseline, Error> {
        Ok(Baseline {
            upstream: bed.upstream_tx()?,
            peers: bed
                .nodes
                .iter()
                .map(|node| node.bytes_from_peers().unwrap_or(0))
                .collect(),
        })
    }

    /// The report: `times[i]` is host i's pull time (`None`: it did not
    /// pull, or is gone); hosts that pulled are checked for the image.
    fn report(
        &self,
        bed: &Bed,
        scenario: &str,
        image: &Published,
        times: &[Option<f64>],
        notes: Vec<String>,
    ) -> Result<Report, Error> {
        let mut results = Vec::with_capacity(bed.nodes.len());
        for (i, node) in bed.nodes.iter().enumerate() {
            let pulled = times.get(i).copied().flatten();
            if pulled.is_some() {
                node.check_image(&image.image)?;
            }
            let now = node.bytes_from_peers().unwrap_or(self.peers[i]);
            results.push(HostResult {
                host: node.name.clone(),
                pull_seconds: pulled,
                bytes_from_peers: now.saturating_sub(self.peers[i]),
            });
        }
        Ok(Report {
            scenario: scenario.to_owned(),
            hosts: bed.nodes.len(),
            image_bytes: crate::images::blob_bytes(&image.image),
            layers: image.image.blobs.len().saturating_sub(1),
            upstream_bytes: bed.upstream_tx()?.saturating_sub(self.upstream),
            results,
            notes,
        })
    }
}

/// Pulls on the hosts `which`, all at once; each one's time.
async fn pull_all(
    nodes: &[Node],
    which: &[usize],
    image: &Published,
    notes: &std::sync::Mutex<Vec<String>>,
) -> Result<Vec<(usize, f64)>, Error> {
    let pulls = which
        .iter()
        .map(|&i| async move { pull(&nodes[i], image, notes).await.map(|took| (i, took)) });
    join_all(pulls).await.into_iter().collect()
}

fn into_times(n: usize, pulled: &[(usize, f64)]) -> Vec<Option<f64>> {
    let mut times = vec![None; n];
    for (i, took) in pulled {
        times[*i] = Some(*took);
    }
    times
}

fn take(notes: std::sync::Mutex<Vec<String>>) -> Vec<String> {
    notes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One host pulls alone: the reference time (everything from the upstream).
pub async fn lone(bed: &Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let pulled = pull_all(&bed.nodes, &[0], image, &notes).await?;
    base.report(
        bed,
        "lone",
        image,
        &into_times(bed.nodes.len(), &pulled),
        take(notes),
    )
}

/// *Rolling*: one host pulls, then all the others at once.
pub async fn rolling(bed: &Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let mut pulled = pull_all(&bed.nodes, &[0], image, &notes).await?;
    wait_advertised(&bed.nodes[0], image).await?;
    let others: Vec<usize> = (1..bed.nodes.len()).collect();
    pulled.extend(pull_all(&bed.nodes, &others, image, &notes).await?);
    base.report(
        bed,
        "rolling",
        image,
        &into_times(bed.nodes.len(), &pulled),
        take(notes),
    )
}

/// *Cold*: every host pulls at once.
pub async fn cold(bed: &Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let all: Vec<usize> = (0..bed.nodes.len()).collect();
    let pulled = pull_all(&bed.nodes, &all, image, &notes).await?;
    base.report(
        bed,
        "cold",
        image,
        &into_times(bed.nodes.len(), &pulled),
        take(notes),
    )
}

/// Waits until `node` advertises the image's keys (after its pull, its
/// containerd's events reach the advertiser).
async fn wait_advertised(node: &Node, image: &Published) -> Result<(), Error> {
    let want = (1 + image.image.manifests.len() + image.image.blobs.len()) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = node.advertised_keys()?;
        if keys >= want {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Error::Timeout {
                what: format!("{} to advertise {want} keys", node.name),
                detail: format!("{keys} advertised"),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Host 0 pulls; then the others pull at once, and `act` is done to host
/// 0 as soon as one of them has received bytes from peers (or once they
/// are done, if none ever does). Returns every pull's time and whether
/// `act` came mid-rollout.
async fn disrupt_provider(
    bed: &mut Bed,
    image: &Published,
    notes: &std::sync::Mutex<Vec<String>>,
    act: impl FnOnce(&mut Node),
) -> Result<(Vec<(usize, f64)>, bool), Error> {
    let mut pulled = pull_all(&bed.nodes, &[0], image, notes).await?;
    wait_advertised(&bed.nodes[0], image).await?;
    let baseline: Vec<u64> = bed.nodes[1..]
        .iter()
        .map(|node| node.bytes_from_peers().unwrap_or(0))
        .collect();
    let (first, rest) = bed.nodes.split_at_mut(1);
    let others: Vec<usize> = (0..rest.len()).collect();
    let rest: &[Node] = rest;
    let watch = async {
        loop {
            let started = rest
                .iter()
                .zip(&baseline)
                .any(|(node, before)| node.bytes_from_peers().unwrap_or(0) > *before);
            if started {
                return true;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let followers = pull_all(rest, &others, image, notes);
    tokio::pin!(followers);
    let mid = tokio::select! {
        biased;
        _ = watch => true,
        done = &mut followers => {
            pulled.extend(done?.into_iter().map(|(i, took)| (i + 1, took)));
            false
        }
    };
    act(&mut first[0]);
    if mid {
        pulled.extend(followers.await?.into_iter().map(|(i, took)| (i + 1, took)));
    }
    Ok((pulled, mid))
}

/// A providing host killed (SIGKILL, kagami and its containerd) mid-rollout:
/// host 0 pulls, the others start, and host 0 dies once one of them has
/// received bytes from peers. Every other host must still complete.
pub async fn provider_killed(bed: &mut Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let n = bed.nodes.len();
    let (pulled, mid) = disrupt_provider(bed, image, &notes, Node::kill).await?;
    let mut notes = take(notes);
    notes.insert(
        0,
        if mid {
            "host-0 was killed once a follower had bytes from peers".to_owned()
        } else {
            "host-0 was killed after the followers finished (they never read from peers)".to_owned()
        },
    );
    let mut times = into_times(n, &pulled);
    // host-0 is gone: its content is not checked, nor its counters read.
    times[0] = None;
    let mut report = base.report(bed, "provider-killed", image, &times, notes)?;
    report.results[0].bytes_from_peers = 0;
    Ok(report)
}

/// A host cut off from the other hosts (not from the upstream) pulls an
/// image the others hold: through containerd's fallback, within bounded
/// time. After the cut heals it serves peers again: it pulls a second
/// image first, and another host gets that one's bytes from peers.
pub async fn cut_off(
    bed: &mut Bed,
    image: &Published,
    second: &Published,
) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let n = bed.nodes.len();
    let cut = n - 1;
    let mut pulled = pull_all(&bed.nodes, &[0], image, &notes).await?;
    wait_advertised(&bed.nodes[0], image).await?;
    let link = bed.nodes[cut].link.clone();
    let others: Vec<crate::netns::Link> = bed.other_links(cut).into_iter().cloned().collect();
    let others_ref: Vec<&crate::netns::Link> = others.iter().collect();
    bed.network().cut(&link, &others_ref)?;
    let during = pull_all(&bed.nodes, &[cut], image, &notes).await;
    bed.network().heal(&link, &others_ref)?;
    pulled.extend(during?);
    let mut notes = take(notes);
    notes.push(format!(
        "{} was cut off from the other hosts during its pull",
        bed.nodes[cut].name
    ));
    // Healed: the cut host pulls a second image, then host 0 does.
    bed.wait_for_mesh()?;
    let inner = std::sync::Mutex::new(Vec::new());
    pull_all(&bed.nodes, &[cut], second, &inner).await?;
    wait_advertised(&bed.nodes[cut], second).await?;
    let before = bed.nodes[0].bytes_from_peers()?;
    pull_all(&bed.nodes, &[0], second, &inner).await?;
    let served = bed.nodes[0].bytes_from_peers()?.saturating_sub(before);
    notes.extend(take(inner));
    if served == 0 {
        return Err(Error::Check(format!(
            "after the cut healed, host-0 got none of the second image from peers (the healed {} holds it)",
            bed.nodes[cut].name
        )));
    }
    notes.push(format!(
        "after healing, host-0 got {:.1} MB of a second image from peers",
        served as f64 / 1e6
    ));
    let mut report = base.report(bed, "cut-off", image, &into_times(n, &pulled), notes)?;
    // Bytes of the second image are not this image's.
    report.results[0].bytes_from_peers = report.results[0].bytes_from_peers.saturating_sub(served);
    Ok(report)
}

/// A slow providing host: the origin of the image's biggest layer pulls
/// (the worst case: the slow provider is also the node others would pull
/// that layer through), then its link is shaped to `slow` and every other
/// host pulls at once.
pub async fn slow_provider(
    bed: &mut Bed,
    image: &Published,
    slow: &Shape,
) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let n = bed.nodes.len();
    let biggest = image
        .image
        .blobs
        .iter()
        .max_by_key(|(_, size)| **size)
        .map(|(digest, _)| digest.to_string())
        .ok_or_else(|| Error::Check("the image has no blobs".to_owned()))?;
    let provider = bed.origin_of(&biggest)?;
    let mut pulled = pull_all(&bed.nodes, &[provider], image, &notes).await?;
    wait_advertised(&bed.nodes[provider], image).await?;
    let link = bed.nodes[provider].link.clone();
    bed.network().shape(&link, slow)?;
    let others: Vec<usize> = (0..n).filter(|i| *i != provider).collect();
    let followers = pull_all(&bed.nodes, &others, image, &notes).await;
    bed.network().shape(&link, &bed.config().host_shape)?;
    pulled.extend(followers?);
    let mut notes = take(notes);
    notes.push(format!(
        "{} (the origin of the biggest layer) pulled first; its link was {slow:?} while the others pulled",
        bed.nodes[provider].name
    ));
    base.report(bed, "slow-provider", image, &into_times(n, &pulled), notes)
}

/// *Origins only*: every host pulls at once, and only the image's origins
/// (the nodes closest to its keys) can reach the upstream; the others are
/// cut off from it, so what they get comes through the origins.
pub async fn origins_only(bed: &Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let n = bed.nodes.len();
    let origins = bed.origin_hosts(image)?;
    let cut: Vec<usize> = (0..n).filter(|i| !origins.contains(i)).collect();
    for &index in &cut {
        bed.cut_from_upstreams(index)?;
    }
    let all: Vec<usize> = (0..n).collect();
    let pulled = pull_all(&bed.nodes, &all, image, &notes).await;
    for &index in &cut {
        bed.heal_upstreams(index)?;
    }
    let pulled = pulled?;
    let mut notes = take(notes);
    let names = |which: &[usize]| {
        which
            .iter()
            .map(|&i| bed.nodes[i].name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    notes.push(format!(
        "origins {} reached the upstream; {} were cut off from it",
        names(&origins),
        names(&cut)
    ));
    base.report(bed, "origins-only", image, &into_times(n, &pulled), notes)
}

/// containerd restarted on the providing host during a rollout: host 0
/// pulls, the others start, host 0's containerd restarts once one of them
/// has bytes from peers; every pull completes and host 0 advertises the
/// image again afterwards.
pub async fn containerd_restarted(bed: &mut Bed, image: &Published) -> Result<Report, Error> {
    let base = Baseline::take(bed)?;
    let notes = std::sync::Mutex::new(Vec::new());
    let n = bed.nodes.len();
    let (pulled, mid) = disrupt_provider(bed, image, &notes, Node::restart_containerd).await?;
    wait_advertised(&bed.nodes[0], image).await?;
    let mut notes = take(notes);
    notes.insert(
        0,
        format!(
            "host-0's containerd was restarted {}; host-0 advertised the image again afterwards",
            if mid {
                "once a follower had bytes from peers"
            } else {
                "after the followers finished"
            }
        ),
    );
    base.report(
        bed,
        "containerd-restarted",
        image,
        &into_times(n, &pulled),
        notes,
    )
}
