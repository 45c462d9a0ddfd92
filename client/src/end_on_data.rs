//! The channel the client's calls go through: tonic's `Channel`, with request bodies that end
//! on their last message.
//!
//! tonic's request body does not know it has ended until it is polled once more after its
//! message, so hyper sends a unary call as three HTTP/2 frames: HEADERS, DATA, and an empty
//! DATA that only carries END_STREAM. With one call in flight each frame leaves in its own
//! socket write and the server wakes for it. [`EndOnData`] looks one frame ahead when a body
//! yields data: when nothing follows, that DATA frame carries END_STREAM itself, and the call
//! takes two frames (docs/PERFORMANCE.md, "A unary request ends on its message").

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tonic::transport::Channel;
use tonic::Status;

/// A `Channel` whose requests' bodies end with their last data frame ([`EndOnData`]).
#[derive(Clone, Debug)]
pub struct EndingChannel(Channel);

impl EndingChannel {
    pub fn new(channel: Channel) -> Self {
        Self(channel)
    }
}

impl tower_service::Service<http::Request<tonic::body::Body>> for EndingChannel {
    type Response = <Channel as tower_service::Service<http::Request<tonic::body::Body>>>::Response;
    type Error = <Channel as tower_service::Service<http::Request<tonic::body::Body>>>::Error;
    type Future = <Channel as tower_service::Service<http::Request<tonic::body::Body>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        self.0
            .call(req.map(|body| tonic::body::Body::new(EndOnData::new(body))))
    }
}

/// A body that, having a data frame in hand, polls its inner body once more: if that ends
/// the body, [`Body::is_end_stream`] is already true when the data frame is handed out.
pub struct EndOnData<B> {
    inner: B,
    /// A frame (or error) polled ahead, handed out next.
    ahead: Option<Result<Frame<Bytes>, Status>>,
    ended: bool,
}

impl<B> EndOnData<B> {
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            ahead: None,
            ended: false,
        }
    }
}

impl<B> Body for EndOnData<B>
where
    B: Body<Data = Bytes, Error = Status> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let frame = match this.ahead.take() {
            Some(f) => f,
            None if this.ended => return Poll::Ready(None),
            None => match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(f)) => f,
                Poll::Ready(None) => {
                    this.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        let is_data = matches!(&frame, Ok(f) if f.is_data());
        if is_data && !this.ended {
            // Pending here leaves nothing ahead: the next poll asks the inner body again.
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(next)) => this.ahead = Some(next),
                Poll::Ready(None) => this.ended = true,
                Poll::Pending => {}
            }
        }
        Poll::Ready(Some(frame))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.ahead.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::task::Waker;

    /// Hands out its frames one a poll, with a Pending before each frame listed as `None`.
    struct Scripted(VecDeque<Option<Frame<Bytes>>>);

    impl Body for Scripted {
        type Data = Bytes;
        type Error = Status;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
            match self.0.pop_front() {
                Some(Some(f)) => Poll::Ready(Some(Ok(f))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                None => Poll::Ready(None),
            }
        }
    }

    fn data(s: &'static str) -> Option<Frame<Bytes>> {
        Some(Frame::data(Bytes::from_static(s.as_bytes())))
    }

    /// Polls until the body ends; each data frame with whether the body said it had ended
    /// right after handing it out.
    fn drain(mut body: EndOnData<Scripted>) -> Vec<(String, bool)> {
        let mut cx = Context::from_waker(Waker::noop());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => {
                    let label = match f.into_data() {
                        Ok(d) => String::from_utf8(d.to_vec()).unwrap(),
                        Err(_) => "trailers".into(),
                    };
                    out.push((label, body.is_end_stream()));
                }
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => return out,
                Poll::Pending => {}
            }
        }
    }

    #[test]
    fn a_lone_message_ends_the_body_as_it_is_handed_out() {
        let body = EndOnData::new(Scripted(VecDeque::from([data("one")])));
        assert!(!body.is_end_stream());
        assert_eq!(drain(body), [("one".to_string(), true)]);
    }

    #[test]
    fn frames_keep_their_order_and_only_the_last_ends() {
        let frames = VecDeque::from([
            data("a"),
            data("b"),
            None,
            data("c"),
            Some(Frame::trailers(http::HeaderMap::new())),
        ]);
        let got = drain(EndOnData::new(Scripted(frames)));
        assert_eq!(
            got,
            [
                ("a".to_string(), false),
                ("b".to_string(), false),
                ("c".to_string(), false),
                ("trailers".to_string(), false),
            ]
        );
    }

    #[test]
    fn a_body_still_pending_after_its_data_is_not_ended_early() {
        let got = drain(EndOnData::new(Scripted(VecDeque::from([
            data("x"),
            None,
            None,
        ]))));
        assert_eq!(got, [("x".to_string(), false)]);
    }
}
