// Package xmpp is the XMPP bridge: chat as a UIMS medium (patent:
// instant message gateway, originator and receiver, for a chat medium),
// built on the bot SDK (package gateways/bot) alone — no MIAP, subject or
// stream of the fabric in sight (docs/XMPP.md).
//
// It joins an XMPP server as a component (XEP-0114, Jabber Component
// Protocol, jabber:component:accept) serving a domain such as
// uims.chat.example.test, and speaks:
//
//   - RFC 6120 (XMPP Core): streams, stanza errors (§8.3) as the answer
//     to a message UIMS refused or could not deliver;
//   - RFC 6121 (XMPP IM): one-to-one chat messages; presence subscriptions
//     to bridge JIDs approved (§3);
//   - XEP-0106 (JID Escaping): an address that is not a client id, such as
//     alice@example.com, is the localpart alice\40example.com
//     (subpackage localpart);
//   - XEP-0184 (Message Delivery Receipts) and XEP-0333 (Chat Markers,
//     displayed): UIMS's delivered and read, both ways;
//   - XEP-0199 (XMPP Ping): after each message to a chat user, a ping to
//     the server tells that the server routed it (or bounced it);
//   - XEP-0359 (origin-id) and XEP-0461 (Message Replies), when the chat
//     client sends them: the message id of a resent message, and the
//     message a reply answers.
//
// The chat user's message goes to UIMS with its stanza id and JID in the
// message's meta information, which status notifications echo; a message
// from UIMS carries the SDK reference as its stanza id, which receipts,
// markers and bounces name. So the bridge keeps no state across restarts.
package xmpp
