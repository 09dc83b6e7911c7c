//! Requests carrying deadlines: a reply takes its request off the deadline
//! index by key, without looking at the others.

use std::time::{Duration, Instant};

use super::{Call, Event, Input, Protocol, Request};
use crate::config::Config;
use crate::value::Value;

/// Moves everything `from` has queued into `to`.
fn deliver(from: &mut Protocol, to: &mut Protocol, now: Instant) {
    let mut out = Vec::new();
    from.write_to(&mut out).expect("a Vec takes everything");
    to.handle_input(now, Input::Receive(&out)).expect("well-formed input");
}

/// Answers the pings `peer` received, as a connection would.
fn answer_pings(peer: &mut Protocol) {
    while let Some(Event::Request { seq, request: Request::Ping(payload) }) = peer.poll_event() {
        peer.send_reply(seq, Ok(payload));
    }
}

/// A caller and a peer that answers pings, past their hellos.
fn pair(now: Instant) -> (Protocol, Protocol) {
    let mut caller = Protocol::new(Config::default(), now);
    let mut peer = Protocol::new(Config::default(), now);
    deliver(&mut caller, &mut peer, now);
    deliver(&mut peer, &mut caller, now);
    (caller, peer)
}

/// Sends `n` pings with deadlines, lets the peer answer them all, feeds the
/// replies back, and returns the deadline entries the caller looked at.
fn visits_for_replies(n: usize) -> u64 {
    let now = Instant::now();
    let (mut caller, mut peer) = pair(now);
    for i in 0..n {
        // Distinct deadlines, latest first, so no order of the index makes
        // the answered request's entry the first one.
        let deadline = now + Duration::from_secs(3600) - Duration::from_millis(i as u64);
        caller.send_request(Call::Ping(Value::Integer(i as i128)), Some(deadline)).expect("sent");
    }
    deliver(&mut caller, &mut peer, now);
    answer_pings(&mut peer);
    deliver(&mut peer, &mut caller, now);
    let mut replies = 0;
    while let Some(event) = caller.poll_event() {
        if let Event::Reply { result, .. } = event {
            result.expect("the ping's echo");
            replies += 1;
        }
    }
    assert_eq!(replies, n, "every ping is answered");
    assert_eq!(caller.pending_count(), 0);
    assert!(caller.deadlines.is_empty(), "every answered request left the deadline index");
    assert_eq!(caller.poll_timeout(), None, "no deadline is left to wake for");
    caller.deadline_visits
}

#[test]
fn a_reply_removes_its_deadline_by_key() {
    // With one reply per request, a scan costs n entries per reply (n²/2
    // in all); removal by key looks at one.
    let n = 2_000;
    let visits = visits_for_replies(n);
    assert!(
        visits <= n as u64,
        "{n} replies looked at {visits} deadline entries: each reply scans the index"
    );
}

#[test]
fn a_replaced_deadline_leaves_the_index() {
    let now = Instant::now();
    let (mut caller, mut peer) = pair(now);
    let seq =
        caller.send_request(Call::Ping(Value::Integer(1)), Some(now + Duration::from_secs(1))).expect("sent");
    caller.set_deadline(seq, Some(now + Duration::from_secs(5)));
    assert_eq!(caller.poll_timeout(), Some(now + Duration::from_secs(5)), "the new deadline counts");
    // The old deadline passing expires nothing.
    caller.handle_input(now + Duration::from_secs(2), Input::Timeout).unwrap();
    assert!(caller.poll_event().is_none());
    deliver(&mut caller, &mut peer, now);
    answer_pings(&mut peer);
    deliver(&mut peer, &mut caller, now);
    assert!(matches!(caller.poll_event(), Some(Event::Reply { seq: s, .. }) if s == seq));
    assert!(caller.deadlines.is_empty());
}

#[test]
fn an_unanswered_request_still_expires() {
    let now = Instant::now();
    let (mut caller, _peer) = pair(now);
    let kept =
        caller.send_request(Call::Ping(Value::Integer(1)), Some(now + Duration::from_secs(1))).expect("sent");
    let answered =
        caller.send_request(Call::Ping(Value::Integer(2)), Some(now + Duration::from_secs(2))).expect("sent");
    // The reply to the second arrives; the first expires on time.
    caller.handle_answer(answered, Ok(Value::Integer(2))).expect("known request");
    assert!(matches!(caller.poll_event(), Some(Event::Reply { seq, .. }) if seq == answered));
    assert_eq!(caller.poll_timeout(), Some(now + Duration::from_secs(1)));
    caller.handle_input(now + Duration::from_secs(1), Input::Timeout).unwrap();
    assert!(matches!(caller.poll_event(), Some(Event::Expired { seq }) if seq == kept));
    assert!(caller.deadlines.is_empty());
}

/// Requests with the connection's one timeout: their deadlines arrive in
/// time order, and replies in any order take them out without a search.
#[test]
fn replies_in_any_order_leave_a_time_ordered_index() {
    let now = Instant::now();
    let (mut caller, _peer) = pair(now);
    let n = 2_000u64;
    let seqs: Vec<u64> = (0..n)
        .map(|i| {
            let deadline = now + Duration::from_secs(30) + Duration::from_micros(i);
            caller.send_request(Call::Ping(Value::Integer(i.into())), Some(deadline)).expect("sent")
        })
        .collect();
    // Every other one first, then the rest, last first.
    let order: Vec<u64> =
        seqs.iter().step_by(2).chain(seqs.iter().skip(1).step_by(2).rev()).copied().collect();
    for &seq in &order {
        caller.handle_answer(seq, Ok(Value::Null)).expect("known request");
    }
    assert!(caller.deadlines.is_empty(), "every answered request left the deadline index");
    assert_eq!(caller.poll_timeout(), None);
    assert!(caller.deadline_visits <= 2 * n, "{} entries looked at for {n} replies", caller.deadline_visits);
}

/// One request that waits long while many later ones come and go: the
/// stale entries behind it are compacted away, not kept until it expires.
#[test]
fn stale_deadlines_behind_a_waiting_request_are_compacted() {
    let now = Instant::now();
    let (mut caller, _peer) = pair(now);
    let waiting =
        caller.send_request(Call::Ping(Value::Integer(0)), Some(now + Duration::from_secs(30))).unwrap();
    for i in 1..20_000u64 {
        let deadline = now + Duration::from_secs(30) + Duration::from_micros(i);
        let seq = caller.send_request(Call::Ping(Value::Integer(i.into())), Some(deadline)).unwrap();
        caller.handle_answer(seq, Ok(Value::Null)).unwrap();
        // Compacted at each insertion past twice the live ones plus 1024.
        assert!(
            caller.deadlines.len() <= 2 * 2 + 1024 + 1,
            "stale entries pile up: {}",
            caller.deadlines.len()
        );
    }
    assert_eq!(caller.poll_timeout(), Some(now + Duration::from_secs(30)));
    caller.handle_input(now + Duration::from_secs(30), Input::Timeout).unwrap();
    let expired: Vec<u64> = std::iter::from_fn(|| caller.poll_event())
        .filter_map(|e| match e {
            Event::Expired { seq } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(expired, [waiting], "only the waiting request expires, once");
    assert!(caller.deadlines.is_empty());
}
