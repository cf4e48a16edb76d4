//! List filters and cursor pagination.

use serde_json::{Value, json};

use crate::utils::{Client, Stack, id, local_url};

fn ids(reply_body: &Value) -> Vec<String> {
    reply_body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

async fn five_webhooks(client: &Client) -> Vec<String> {
    let mut created = Vec::new();
    for i in 0..5 {
        let wh = client
            .webhook(&local_url(&format!("w{i}")), json!("*"))
            .await;
        created.push(wh["id"].as_str().unwrap().to_string());
    }
    created.reverse(); // newest first
    created
}

#[tokio::test]
async fn pages_walk_forward_and_back_newest_first() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    let all = five_webhooks(&client).await;

    let first = client.get("/v1/webhooks?limit=2").await;
    let body = first.assert_status(200).clone();
    assert_eq!(ids(&body), all[0..2]);
    assert_eq!(body["pagination"]["limit"], 2);
    assert_eq!(body["pagination"]["has_next_page"], true);
    assert_eq!(body["pagination"]["has_previous_page"], false);

    let end = body["pagination"]["end_cursor"].as_str().unwrap();
    let second = client
        .get(&format!("/v1/webhooks?limit=2&after={end}"))
        .await;
    let body2 = second.assert_status(200).clone();
    assert_eq!(ids(&body2), all[2..4]);
    assert_eq!(body2["pagination"]["has_next_page"], true);
    assert_eq!(body2["pagination"]["has_previous_page"], true);

    let end2 = body2["pagination"]["end_cursor"].as_str().unwrap();
    let third = client
        .get(&format!("/v1/webhooks?limit=2&after={end2}"))
        .await;
    let body3 = third.assert_status(200).clone();
    assert_eq!(ids(&body3), all[4..5]);
    assert_eq!(body3["pagination"]["has_next_page"], false);

    let start3 = body3["pagination"]["start_cursor"].as_str().unwrap();
    let back = client
        .get(&format!("/v1/webhooks?limit=2&before={start3}"))
        .await;
    assert_eq!(ids(back.assert_status(200)), all[2..4]);
    let start2 = back.body["pagination"]["start_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let front = client
        .get(&format!("/v1/webhooks?limit=2&before={start2}"))
        .await;
    assert_eq!(ids(front.assert_status(200)), all[0..2]);
    assert_eq!(front.body["pagination"]["has_previous_page"], false);

    let default = client.get("/v1/webhooks").await;
    assert_eq!(ids(default.assert_status(200)), all);
    assert_eq!(default.body["pagination"]["limit"], 20);
}

#[tokio::test]
async fn bad_paging_parameters_and_foreign_or_tampered_cursors_are_400() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    five_webhooks(&client).await;
    let cursor = client.get("/v1/webhooks?limit=1").await.body["pagination"]["end_cursor"]
        .as_str()
        .unwrap()
        .to_string();
    for query in ["limit=0", "limit=101", "limit=ten", "limit=-1"] {
        let reply = client.get(&format!("/v1/webhooks?{query}")).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some("limit"));
    }
    client
        .get(&format!("/v1/webhooks?after={cursor}&before={cursor}"))
        .await
        .assert_error(400, "INVALID_REQUEST");
    let mut tampered = cursor.clone().into_bytes();
    let last = tampered.len() - 3;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for bad in [tampered.as_str(), "garbage", "%00", "AAAA"] {
        client
            .get(&format!("/v1/webhooks?after={bad}"))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
    // Another tenant's cursor, and a cursor of another list.
    let other = stack.tenant().await;
    other
        .get(&format!("/v1/webhooks?after={cursor}"))
        .await
        .assert_error(400, "INVALID_REQUEST");
    client
        .get(&format!("/v1/event-types?after={cursor}"))
        .await
        .assert_error(400, "INVALID_REQUEST");
}

#[tokio::test]
async fn filters_select_by_status_and_by_the_event_a_webhook_would_receive() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client
        .event_types(&["user.created", "user.deleted", "data.updated"])
        .await;
    let exact = client
        .webhook(&local_url("exact"), json!("user.created"))
        .await;
    let prefix = client.webhook(&local_url("prefix"), json!("data.*")).await;
    let all = client.webhook(&local_url("all"), json!("*")).await;
    let id = |w: &Value| w["id"].as_str().unwrap().to_string();
    client
        .post_empty(&format!("/v1/webhooks/{}/pause", id(&prefix)))
        .await
        .assert_status(200);

    let by_event = client.get("/v1/webhooks?event=user.created").await;
    assert_eq!(ids(by_event.assert_status(200)), vec![id(&all), id(&exact)]);
    let by_prefix = client.get("/v1/webhooks?event=data.updated").await;
    assert_eq!(
        ids(by_prefix.assert_status(200)),
        vec![id(&all), id(&prefix)]
    );
    let paused = client.get("/v1/webhooks?status=paused").await;
    assert_eq!(ids(paused.assert_status(200)), vec![id(&prefix)]);
    let active_data = client
        .get("/v1/webhooks?status=active&event=data.updated")
        .await;
    assert_eq!(ids(active_data.assert_status(200)), vec![id(&all)]);
    let none = client.get("/v1/webhooks?status=disabled").await;
    assert_eq!(none.assert_status(200)["data"], json!([]));

    for query in [
        "status=sleeping",
        "event=bad%20name",
        "show_authentication=maybe",
    ] {
        client
            .get(&format!("/v1/webhooks?{query}"))
            .await
            .assert_error(400, "INVALID_REQUEST");
    }
}

#[tokio::test]
async fn event_types_paginate_like_every_list() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["a.one", "a.two", "a.three"]).await;
    let first = client.get("/v1/event-types?limit=2").await;
    let names = |b: &Value| -> Vec<String> {
        b["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(first.assert_status(200)), vec!["a.three", "a.two"]);
    let end = first.body["pagination"]["end_cursor"].as_str().unwrap();
    let second = client
        .get(&format!("/v1/event-types?limit=2&after={end}"))
        .await;
    assert_eq!(names(second.assert_status(200)), vec!["a.one"]);
    assert_eq!(second.body["pagination"]["has_next_page"], false);
    assert_eq!(second.body["pagination"]["has_previous_page"], true);
}

/// Every page of `path` (which carries its `limit`), walking forward from the first page;
/// then every page walking back from the last one. Both give the records newest first.
async fn walk_both_ways(client: &Client, path: &str) -> (Vec<String>, Vec<String>) {
    let join = if path.contains('?') { '&' } else { '?' };
    let mut forward = Vec::new();
    let mut page = client.get(path).await.assert_status(200).clone();
    loop {
        forward.extend(ids(&page));
        if page["pagination"]["has_next_page"] != true {
            break;
        }
        let end = page["pagination"]["end_cursor"].as_str().unwrap();
        let next = client.get(&format!("{path}{join}after={end}")).await;
        page = next.assert_status(200).clone();
    }
    // `page` is the last one: walk back from its first record.
    let mut backward = ids(&page);
    while page["pagination"]["has_previous_page"] == true {
        let start = page["pagination"]["start_cursor"].as_str().unwrap();
        let previous = client.get(&format!("{path}{join}before={start}")).await;
        page = previous.assert_status(200).clone();
        let mut earlier = ids(&page);
        earlier.append(&mut backward);
        backward = earlier;
    }
    (forward, backward)
}

/// Events and deliveries are spread over shards (partitions) and read back merged: every
/// record once, newest first, whichever way the pages are walked and whatever the filters.
#[tokio::test]
async fn sharded_lists_give_every_record_once_newest_first_both_ways() {
    let stack = Stack::start().await;
    let receiver = crate::receiver::Receiver::start().await;
    let client = stack.tenant().await;
    client.event_types(&["a.b", "c.d"]).await;
    let one = client.webhook(&receiver.url("one"), json!("*")).await;
    client.webhook(&receiver.url("two"), json!(["a.b"])).await;
    let mut published = Vec::new();
    for i in 0..30 {
        let event_type = if i % 3 == 0 { "c.d" } else { "a.b" };
        let event = client.publish(event_type, json!({"i": i})).await;
        published.push((event["id"].as_str().unwrap().to_string(), event_type));
    }
    // 30 to "one", 20 to "two".
    client
        .wait_for_deliveries("", std::time::Duration::from_secs(30), |d| {
            d.len() == 50 && d.iter().all(|r| r["status"] == "succeeded")
        })
        .await;
    let mut newest_first: Vec<String> = published.iter().map(|(id, _)| id.clone()).collect();
    newest_first.reverse();

    let (forward, backward) = walk_both_ways(&client, "/v1/events?limit=7").await;
    assert_eq!(forward, newest_first);
    assert_eq!(backward, newest_first);

    let typed: Vec<String> = published
        .iter()
        .rev()
        .filter(|(_, t)| *t == "c.d")
        .map(|(id, _)| id.clone())
        .collect();
    let (forward, backward) = walk_both_ways(&client, "/v1/events?limit=3&type=c.d").await;
    assert_eq!((forward.clone(), backward), (typed.clone(), typed));

    for (query, expected) in [
        ("limit=9".to_string(), 50),
        (
            format!("limit=4&webhook_id={}", one["id"].as_str().unwrap()),
            30,
        ),
        ("limit=6&event_type=c.d&status=succeeded".to_string(), 10),
    ] {
        let path = format!("/v1/deliveries?{query}");
        let (forward, backward) = walk_both_ways(&client, &path).await;
        assert_eq!(forward.len(), expected, "{query}");
        let mut sorted = forward.clone();
        sorted.sort();
        sorted.dedup();
        sorted.reverse();
        assert_eq!(forward, sorted, "{query}: once each, newest first");
        assert_eq!(backward, forward, "{query}: the same walked back");
    }
}

#[tokio::test]
async fn an_events_deliveries_are_listed_by_its_id_and_no_other() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["user.created"]).await;
    let a = client.webhook(&local_url("a"), json!("*")).await;
    let b = client.webhook(&local_url("b"), json!("*")).await;
    let first = client.publish("user.created", json!({"n": 1})).await;
    let second = client.publish("user.created", json!({"n": 2})).await;
    for event in [&first, &second] {
        let id = crate::utils::id(event);
        let found = client
            .wait_for_deliveries(
                &format!("event_id={id}"),
                std::time::Duration::from_secs(10),
                |d| d.len() == 2,
            )
            .await;
        assert!(
            found.iter().all(|d| d["event_id"] == id.as_str()),
            "{found:#?}"
        );
        let mut webhooks: Vec<&str> = found
            .iter()
            .map(|d| d["webhook_id"].as_str().unwrap())
            .collect();
        webhooks.sort();
        let mut want = vec![a["id"].as_str().unwrap(), b["id"].as_str().unwrap()];
        want.sort();
        assert_eq!(webhooks, want);
        // With the other filters too.
        let one = client
            .deliveries(&format!(
                "event_id={id}&webhook_id={}",
                a["id"].as_str().unwrap()
            ))
            .await;
        assert_eq!(one.len(), 1);
    }
    for bad in ["evt_nope", "wh_01J0000000000000000000000", "x"] {
        let reply = client.get(&format!("/v1/deliveries?event_id={bad}")).await;
        reply.assert_error(400, "INVALID_REQUEST");
        assert_eq!(reply.field(), Some("event_id"));
    }
    // Another tenant asking for this event's deliveries finds none.
    let other = stack.tenant().await;
    assert!(
        other
            .deliveries(&format!("event_id={}", crate::utils::id(&first)))
            .await
            .is_empty()
    );
}

/// A page stays under Lambda's 6 MB response limit as Lambda measures it: the answer's
/// body is an escaped JSON string inside the invocation response, so data full of quotes
/// takes twice its size there. Twenty events of 180 KB of quotes (3.6 MB of JSON, 7.2 MB
/// as Lambda sends it) come back in shorter pages, every one of them, never a 500.
#[tokio::test]
async fn a_page_of_large_events_stays_under_lambdas_limit_as_lambda_measures_it() {
    let stack = Stack::start().await;
    let client = stack.tenant().await;
    client.event_types(&["blob.quoted"]).await;
    // 90,000 quotes: 180 KB of JSON (each one \"), 360 KB once escaped again.
    let quotes = "\"".repeat(90_000);
    let mut published = Vec::new();
    for n in 0..20 {
        published.push(id(&client
            .publish("blob.quoted", json!({"n": n, "q": quotes}))
            .await));
    }
    let mut seen = Vec::new();
    let mut path = "/v1/events?limit=20".to_string();
    let mut pages = 0;
    loop {
        let page = client.get(&path).await;
        let body = page.assert_status(200);
        pages += 1;
        let data = body["data"].as_array().unwrap();
        assert!(!data.is_empty() && data.len() < 20, "{} items", data.len());
        seen.extend(data.iter().map(id));
        if body["pagination"]["has_next_page"] != true {
            break;
        }
        let cursor = body["pagination"]["end_cursor"].as_str().unwrap();
        path = format!("/v1/events?limit=20&after={cursor}");
    }
    assert!(pages >= 2, "{pages} pages");
    published.reverse();
    assert_eq!(seen, published, "every event once, newest first");
}
