//! State the remoting handlers keep (`crate::remoting`), held by the broker
//! (`crate::services::Broker`) and read by the domain's readers (metrics, check-backs, group
//! descriptions): the connected remoting clients ([`clients`]) and the queue locks of ordered
//! consumers ([`locks`]); the push that tells a group's consumers of an offset reset
//! ([`offset_reset`]). Apart from the handlers so that holding it imports no transport.

pub mod clients;
pub mod locks;
pub mod offset_reset;
