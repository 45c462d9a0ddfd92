use apogee_client::*;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    let cfg = ClientConfig::new("127.0.0.1:19876");
    let p = Producer::connect(cfg.clone()).await?;
    println!("max body {}", p.max_body_size());
    let r = p
        .send_batch(vec![
            Message::new("Two", "b1"),
            Message::new("Two", "b2"),
            Message::new("Two", "b3"),
        ])
        .await?;
    println!("batch {:?}", r);
    println!("max body after {}", p.max_body_size());
    let e = p
        .send(Message::new("Two", vec![0u8; 5 * 1024 * 1024]))
        .await
        .unwrap_err();
    println!("big: {e}");
    let c = SimpleConsumer::connect(
        cfg.clone(),
        "G3",
        vec![("Two".into(), FilterExpression::default())],
    )
    .await?;
    let mut got = Vec::new();
    while got.len() < 12 {
        let m = c
            .receive("Two", 32, Duration::from_secs(2), Duration::from_secs(1))
            .await?;
        if m.is_empty() {
            break;
        }
        got.extend(m);
    }
    println!("received {}", got.len());
    // change invisible of first; ack half; let the rest come back
    let h = c
        .change_invisible_duration(&got[0], Duration::from_secs(10))
        .await?;
    println!("new handle differs: {}", h != got[0].receipt_handle);
    let res = c.ack_many(&got[1..4]).await;
    println!(
        "acks {:?}",
        res.iter().map(|r| r.is_ok()).collect::<Vec<_>>()
    );
    let stale = c.ack(&got[0]).await;
    println!(
        "ack with old handle: {:?}",
        stale.map_err(|e| e.to_string())
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let again = c
        .receive("Two", 32, Duration::from_secs(30), Duration::from_secs(2))
        .await?;
    println!(
        "redelivered {} attempts {:?}",
        again.len(),
        again.iter().map(|m| m.delivery_attempt).collect::<Vec<_>>()
    );
    let res = c.ack_many(&again).await;
    println!("acks ok {}", res.iter().filter(|r| r.is_ok()).count());
    let e = c
        .receive("Nope", 1, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap_err();
    println!("unsubscribed: {e}");
    c.shutdown().await;
    p.shutdown().await;
    Ok(())
}
