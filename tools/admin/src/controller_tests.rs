//! Unit tests of the controller views: `controller status` as a table and JSON, and the
//! answer of `broker elect`.

use super::*;
use crate::output::render_one;
use apogee_proto::cluster::{
    ControllerGroupStatus, ControllerMemberStatus, ControllerStatusResponse,
};

fn member(id: u64, log_end: u64) -> ControllerMemberStatus {
    ControllerMemberStatus {
        member_id: id,
        address: format!("10.0.0.{id}:10911"),
        priority: 255,
        last_epoch: 3,
        log_end,
    }
}

/// Node 2 of a group led by node 1; broker-a's master is member 2 (epoch 3), in sync with 1.
fn response() -> ControllerStatusResponse {
    ControllerStatusResponse {
        node_id: 2,
        leader_id: Some(1),
        term: 4,
        last_applied_index: Some(17),
        last_applied_term: 4,
        is_leader: false,
        groups: vec![ControllerGroupStatus {
            broker_name: "broker-a".into(),
            members: vec![member(1, 4096), member(2, 4096), member(3, 1024)],
            master: 2,
            master_epoch: 3,
            in_sync: vec![1, 2],
            in_sync_epoch: 6,
        }],
        stale: false,
        stale_reason: String::new(),
    }
}

#[test]
fn controller_status_shows_the_node_then_groups_then_members() {
    let view = ControllerStatusView::new(&response());
    assert_eq!(
        render_controller_status(&view, Format::Table),
        "node          2\n\
         leader        1\n\
         role          follower\n\
         term          4\n\
         last applied  17 (term 4)\n\
         state         confirmed by the leader\n\
         \n\
         BROKER    MASTER  MASTER EPOCH  IN SYNC  IN-SYNC EPOCH\n\
         broker-a  2       3             1,2      6\n\
         \n\
         BROKER    MEMBER  ROLE    ADDRESS         PRIORITY  LAST EPOCH  LOG END  IN SYNC\n\
         broker-a  1       -       10.0.0.1:10911  255       3           4096     yes\n\
         broker-a  2       master  10.0.0.2:10911  255       3           4096     yes\n\
         broker-a  3       -       10.0.0.3:10911  255       3           1024     no\n"
    );
}

#[test]
fn a_stale_status_says_so_and_why() {
    let mut r = response();
    r.stale = true;
    r.stale_reason = "the leader 1 at ns1:9876 could not be asked: refused".into();
    r.leader_id = None;
    r.groups.clear();
    let text = render_controller_status(&ControllerStatusView::new(&r), Format::Table);
    assert!(text.contains("leader        none known\n"), "{text}");
    assert!(
        text.contains("state         STALE, this node's own: the leader 1 at ns1:9876"),
        "{text}"
    );
    assert!(
        text.ends_with("no broker group in the controller yet\n"),
        "{text}"
    );
}

#[test]
fn controller_status_json_is_one_object_with_the_groups_and_members() {
    let view = ControllerStatusView::new(&response());
    let v: serde_json::Value =
        serde_json::from_str(&render_controller_status(&view, Format::Json)).unwrap();
    assert_eq!(v["node_id"], 2);
    assert_eq!(v["leader_id"], 1);
    assert_eq!(v["is_leader"], false);
    assert_eq!(v["stale"], false);
    assert!(v["stale_reason"].is_null());
    assert_eq!(v["groups"][0]["master"], 2);
    assert_eq!(v["groups"][0]["in_sync"], serde_json::json!([1, 2]));
    assert_eq!(v["groups"][0]["members"][2]["member_id"], 3);
    assert_eq!(v["groups"][0]["members"][2]["in_sync"], false);
    assert_eq!(v["groups"][0]["members"][1]["is_master"], true);
    // A group without a master says null, not 0.
    let mut r = response();
    r.groups[0].master = 0;
    let view = ControllerStatusView::new(&r);
    assert_eq!(view.groups[0].master, None);
    assert!(view.groups[0].members.iter().all(|m| !m.is_master));
}

#[test]
fn an_election_prints_the_new_master_and_epochs() {
    let elected = ElectedView {
        broker: "broker-a".into(),
        master: 3,
        master_epoch: 4,
        in_sync_epoch: 7,
    };
    assert_eq!(
        render_one(&elected, Format::Table),
        "BROKER    NEW MASTER  MASTER EPOCH  IN-SYNC EPOCH\n\
         broker-a  3           4             7\n"
    );
    assert_eq!(ElectedView::headers().len(), elected.cells().len());
    let m = &ControllerStatusView::new(&response()).groups[0];
    assert_eq!(ControllerGroupView::headers().len(), m.cells().len());
    assert_eq!(
        ControllerMemberView::headers().len(),
        m.members[0].cells().len()
    );
}
