use super::*;

const SECOND: Duration = Duration::from_secs(1);

fn settings() -> Settings {
    Settings {
        timeout: 2 * SECOND,
        settle: Duration::from_millis(50),
        cache_ttl: 5 * SECOND,
        cache_capacity: 2,
    }
}

fn key(n: u8) -> Key {
    format!("docker.io/library/app:{n}").parse().unwrap()
}

fn peer(n: u8) -> Peer {
    Peer {
        id: format!("peer-{n}"),
        addr: ([10, 0, 0, n], 6443).into(),
    }
}

fn ask(
    lookups: &mut Lookups<u32, u8>,
    k: &Key,
    limit: usize,
    now: Instant,
) -> (Option<Reply>, oneshot::Receiver<Vec<Peer>>) {
    let (tx, rx) = oneshot::channel();
    (lookups.request(k, limit, tx, now), rx)
}

fn answer(rx: &mut oneshot::Receiver<Vec<Peer>>) -> Option<Vec<Peer>> {
    rx.try_recv().ok()
}

#[test]
fn concurrent_callers_share_one_lookup_and_are_answered_when_they_have_enough() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    let (reply, mut first) = ask(&mut lookups, &key(1), 1, now);
    lookups.start(7, key(1), 1, reply.expect("a new lookup"), now);
    let (joined, mut second) = ask(&mut lookups, &key(1), 2, now);
    assert!(
        joined.is_none(),
        "the second caller joins the lookup in flight"
    );

    assert_eq!(lookups.found(7, peer(1), now), None);
    assert_eq!(answer(&mut first), Some(vec![peer(1)]));
    assert_eq!(answer(&mut second), None);
    assert_eq!(
        lookups.found(7, peer(1), now),
        None,
        "duplicates are ignored"
    );
    assert_eq!(
        lookups.found(7, peer(2), now),
        Some(7),
        "everyone has enough: stop the query"
    );
    assert_eq!(answer(&mut second), Some(vec![peer(1), peer(2)]));
    assert_eq!(lookups.next_deadline(), None);

    // Cached for callers wanting no more than that lookup stopped at.
    let (none, mut cached) = ask(&mut lookups, &key(1), 2, now + SECOND);
    assert!(none.is_none());
    assert_eq!(answer(&mut cached), Some(vec![peer(1), peer(2)]));
    let (more, _) = ask(&mut lookups, &key(1), 3, now + SECOND);
    assert!(more.is_some(), "a caller wanting more looks again");
}

#[test]
fn a_lookup_that_finds_nothing_ends_at_its_deadline_with_an_empty_answer() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    let (reply, mut rx) = ask(&mut lookups, &key(1), 3, now);
    lookups.start(1, key(1), 3, reply.unwrap(), now);
    assert_eq!(lookups.next_deadline(), Some(now + 2 * SECOND));
    assert!(lookups.expire(now + SECOND).is_empty());
    assert_eq!(answer(&mut rx), None);
    assert_eq!(lookups.expire(now + 2 * SECOND), vec![1]);
    assert_eq!(answer(&mut rx), Some(vec![]));

    // The miss is cached for the cache TTL, then looked up again.
    let (none, mut cached) = ask(&mut lookups, &key(1), 3, now + 3 * SECOND);
    assert!(none.is_none());
    assert_eq!(answer(&mut cached), Some(vec![]));
    let (again, _) = ask(&mut lookups, &key(1), 3, now + 8 * SECOND);
    assert!(again.is_some());
}

#[test]
fn after_the_first_provider_a_lookup_waits_only_the_settle_time() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    let (reply, mut rx) = ask(&mut lookups, &key(1), 3, now);
    lookups.start(1, key(1), 3, reply.unwrap(), now);
    let later = now + Duration::from_millis(100);
    lookups.found(1, peer(4), later);
    assert_eq!(
        lookups.next_deadline(),
        Some(later + Duration::from_millis(50))
    );
    assert_eq!(lookups.expire(later + Duration::from_millis(50)), vec![1]);
    assert_eq!(answer(&mut rx), Some(vec![peer(4)]));
}

#[test]
fn a_finished_query_waits_for_providers_whose_address_is_being_learned() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    let (reply, mut rx) = ask(&mut lookups, &key(1), 3, now);
    lookups.start(1, key(1), 3, reply.unwrap(), now);
    lookups.unresolved(1, 9, None);
    assert!(lookups.awaits(&9));
    lookups.query_done(1, now);
    assert_eq!(answer(&mut rx), None);
    assert_eq!(lookups.resolved(9, Some(peer(9)), now), vec![1]);
    assert_eq!(answer(&mut rx), Some(vec![peer(9)]));
    assert!(!lookups.awaits(&9));

    let (reply, mut rx) = ask(&mut lookups, &key(2), 3, now);
    lookups.start(2, key(2), 3, reply.unwrap(), now);
    lookups.unresolved(2, 8, None);
    lookups.query_done(2, now);
    assert_eq!(lookups.resolved(8, None, now), vec![2]);
    assert_eq!(answer(&mut rx), Some(vec![]));

    // Not learned by the deadline: the guess stands in.
    let (reply, mut rx) = ask(&mut lookups, &key(3), 3, now);
    lookups.start(3, key(3), 3, reply.unwrap(), now);
    lookups.unresolved(3, 7, Some(peer(7)));
    lookups.query_done(3, now);
    assert_eq!(lookups.expire(now + 2 * SECOND), vec![3]);
    assert_eq!(answer(&mut rx), Some(vec![peer(7)]));
}

#[test]
fn the_cache_is_bounded_and_a_zero_limit_asks_nothing() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    for n in 0..5u8 {
        let (reply, _rx) = ask(&mut lookups, &key(n), 1, now);
        lookups.start(u32::from(n), key(n), 1, reply.unwrap(), now);
        lookups.query_done(u32::from(n), now);
    }
    assert!(lookups.cache.len() <= 2, "{}", lookups.cache.len());
    assert!(lookups.cache_order.len() <= 4);
    let (none, mut rx) = ask(&mut lookups, &key(9), 0, now);
    assert!(none.is_none());
    assert_eq!(answer(&mut rx), Some(vec![]));
}

#[test]
fn lookups_in_flight_are_bounded() {
    let now = Instant::now();
    let mut lookups = Lookups::new(settings());
    for n in 0..MAX_LOOKUPS {
        let k: Key = format!("docker.io/library/app:{n}").parse().unwrap();
        let (reply, _rx) = ask(&mut lookups, &k, 1, now);
        lookups.start(n as u32, k, 1, reply.unwrap(), now);
    }
    let other: Key = "docker.io/library/other:1".parse().unwrap();
    let (refused, mut rx) = ask(&mut lookups, &other, 1, now);
    assert!(refused.is_none());
    assert_eq!(answer(&mut rx), Some(vec![]));
}
