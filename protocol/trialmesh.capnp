# The trialmesh wire protocol: what federation members say to each other over the secure
# channel (crypto/channel.h; docs/channel.md) with Cap'n Proto RPC on top.
#
# Compatibility rules: field and method ordinals are frozen; new fields are added at the end
# with new ordinals; a peer ignores fields it does not know. A breaking change bumps
# `protocolVersion` below, and a site refuses requests of another version with a reason.
# Overview and the rules a site applies to every query: docs/protocol.md.

@0xdf93b9d5d1d6753b;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("trialmesh::protocol::wire");

const protocolVersion :UInt32 = 2;
# The version a QueryRequest carries and a NodeInfo reports. Version 2: a request names its
# sites in `audience` and is signed once for all of them (version 1 signed one copy per site,
# naming it in `siteKey`).

struct NodeInfo {
  # What a site says about itself (Site.info). Public metadata, no patient data.
  name @0 :Text;             # its member name in the federation's members file
  federation @1 :Text;       # the members file's `federation`
  role @2 :Text;             # "site"
  protocolVersion @3 :UInt32;
  softwareVersion @4 :Text;  # e.g. "trialmesh 0.1.0"
  studies @5 :List(Text);    # studies this site answers queries for
  policies @6 :List(StudyPolicy);
  # (issue #5) The aggregation policy of the newest approval this site holds per study, so a
  # coordinator learns the mode, quorum, minimum cell size and time bin it must use without the
  # user knowing them. Public: the approval is shown to coordinators anyway.
  datasets @7 :List(DatasetVersion);
  # (issue #15 item 3) The storage version of each study's dataset (increases with every
  # import), so a standing query's watcher notices a data refresh with one cheap call.
}

struct DatasetVersion {
  study @0 :Text;
  version @1 :UInt64;
}

enum Aggregation {
  # How the sites' answers are combined (ethics::AggregationMode; docs/privacy.md).
  plain @0;     # each site returns its partial aggregate
  secure @1;    # each site returns its masked, sealed additive vector (only the sum is visible)
  secureDp @2;  # secure plus discrete Laplace noise shares drawn by the sites
}

struct StudyPolicy {
  study @0 :Text;
  approval @1 :Text;            # the approval's label, e.g. "LUNG-7 v3"
  aggregation @2 :Aggregation;
  minSites @3 :UInt32;          # fewest participants of a secure round
  minCellSize @4 :UInt32;       # disclosure control on the combined result
  timeBin @5 :Float64;          # km time grid width; 0 = none
  dpEpsilonPerQuery @6 :Float64;
}

struct QueryRequest {
  # The part of a query the coordinator signs. It travels as bytes (SignedQuery.request) in
  # the Cap'n Proto canonical encoding (capnp::canonicalize: a single segment, no padding,
  # pointers in pre-order), so the bytes signed are exactly the bytes verified and a site can
  # check canonicity instead of re-encoding.
  protocolVersion @0 :UInt32;  # must equal `protocolVersion`
  federation @1 :Text;         # the members file's `federation`; a query is not valid elsewhere
  study @2 :Text;              # the study whose dataset answers, e.g. "LUNG-7"
  queryText @3 :Text;          # query::canonicalQueryText of the query (docs/query-language.md)
  coordinatorKey @4 :Data;     # the signer: 32-byte Ed25519 key of a member with role coordinator
  siteKey @5 :Data;            # version 1 only (the one site a copy was for); empty since
                               # version 2, which names the sites in `audience`
  nonce @6 :Data;              # 16..64 random bytes; a site accepts each nonce once
  issuedAtMs @7 :Int64;        # coordinator clock, Unix milliseconds
  expiresAtMs @8 :Int64;       # after this a site refuses the query; expiresAtMs > issuedAtMs
  aggregation @9 :Aggregation; # (issue #5) the mode the coordinator asks for; absent = plain.
                               # A site refuses a mode other than its approval's.
  participants @10 :List(Data);
  # (issue #5) secure modes: the round's participant list, 32-byte Ed25519 site keys in strictly
  # ascending byte order, including this site. With `nonce` as the round id it keys the
  # pairwise masks, so masks cancel only when every participant was sent the same list.
  audience @11 :List(Data);
  # (version 2) the sites this request is sent to: 32-byte Ed25519 site keys in strictly
  # ascending byte order. A site refuses a request whose audience does not list it. One
  # signature covers every site of a query; a site cannot pass it on, because a site answers
  # only the coordinator that signed, over that coordinator's own authenticated connection,
  # and accepts each nonce once.
}

struct SignedQuery {
  request @0 :Data;    # canonical encoding of a QueryRequest (see above)
  signature @1 :Data;  # Ed25519 (64 bytes) by request.coordinatorKey over
                       # "trialmesh-query-v1\0" || request
}

struct KmPoint {
  time @0 :Float64;
  events @1 :UInt64;
  censored @2 :UInt64;
}

struct KmCell {
  points @0 :List(KmPoint);  # strictly ascending time
}

struct StatPartial {
  # Mirror of query::StatPartial (query/partial.h): per-cell vectors; only the vectors the
  # statistic needs are non-empty.
  n @0 :List(UInt64);
  missing @1 :List(UInt64);
  sum @2 :List(Float64);
  intSum @3 :List(Int64);
  mean @4 :List(Float64);
  m2 @5 :List(Float64);
  min @6 :List(Float64);
  max @7 :List(Float64);
  bins @8 :UInt32;
  binCounts @9 :List(UInt64);
  km @10 :List(KmCell);
  vec @11 :List(Float64);  # model rounds: additive sums, layout in query/partial.h
}

struct PartialResult {
  # Mirror of query::PartialResult: aggregates only, never rows. The receiver validates every
  # vector length against `cells`/`statistics` before merging.
  dictionaryHash @0 :Text;  # storage::Dictionary::hashHex() of the site's dictionary
  queryText @1 :Text;       # canonical query text
  cells @2 :UInt32;
  statistics @3 :UInt32;
  cellRows @4 :List(UInt64);
  rowsScanned @5 :UInt64;
  stats @6 :List(StatPartial);
}

struct QueryResponse {
  site @0 :Text;             # the answering site's member name
  partial @1 :PartialResult;
  dictionary @2 :Text;       # the study's data dictionary (TOML): metadata the coordinator
                             # needs to bind the query and label the result; no patient data.
                             # Empty when the request's knownDictionaryHash equals
                             # partial.dictionaryHash (the coordinator already holds it).
  datasetVersion @3 :UInt64; # storage version of the dataset that answered
  elapsedUs @4 :UInt64;      # scan time at the site, microseconds
  maskedVector @5 :Data;
  # (issue #5) secure modes: the site's additive vector (query/additive.h) plus its pairwise
  # mask (and, in secure-dp, its noise share), 16 bytes per word little-endian, sealed to the
  # coordinator for this round (crypto::sealForRound). `partial` then carries only its shape
  # (dictionaryHash, queryText, cells, statistics); no vector of it is set.
}

interface Site {
  # Served by every site node to authenticated members over the secure channel. Refusals come
  # back as exceptions whose description is "<StatusCode>: <reason>" (protocol/status_map),
  # e.g. "PermissionDenied: query signature does not verify", so a coordinator can show it.

  info @0 () -> (info :NodeInfo);
  # Always allowed for a member; used for readiness checks.

  runQuery @1 (query :SignedQuery, knownDictionaryHash :Text) -> (response :QueryResponse);
  # Verifies the signature, that the signer is a member with role coordinator and is the
  # authenticated peer of this connection, the federation, site key, protocol version,
  # freshness and the nonce, then runs the query on the study's dataset and returns its
  # partial aggregates.
  # knownDictionaryHash (added after protocol version 1 shipped; parameter ordinal 1, absent =
  # empty from older coordinators): the hex dictionary hash the coordinator already holds for
  # this study. When it equals the site's, the response leaves `dictionary` empty, so a
  # coordinator that keeps a session fetches and parses each dictionary once, not per answer.
  # It is not part of the signed request: it changes only what metadata comes back.

  # Ethics (issue #4; docs/ethics.md). Approvals and statements travel as the ethics module's
  # canonical signed bytes (ethics::encodeSignedApproval / encodeSignedStatement), which the
  # site verifies on receipt; audit entries, tree heads and hashes as their canonical bytes.
  # Every ethics method is allowed only to members with role ethics-board and to the site
  # itself; anyone else gets "PermissionDenied: ...".

  submitApproval @2 (approval :Data) -> (receipt :Text);
  # Verifies the lead committee's signature, stores the approval durably, logs it; receipt
  # names the approval and its id.

  submitStatement @3 (statement :Data) -> (receipt :Text);
  # A signed recognition, suspension, reinstatement or revocation of a stored approval.

  listApprovals @4 () -> (approvals :List(Data), standings :List(ApprovalStanding));
  # Every stored signed approval, newest version first per study; `standings` (same order, added
  # later: empty from an older site) says how this site stands on each today
  # (ethics::ApprovalRegistry::standings).

  auditTreeHead @5 () -> (head :Data);
  # A signed tree head for the log's current size (ethics::encodeTreeHead).

  auditEntries @6 (begin :UInt64, count :UInt32) -> (entries :List(AuditEntry));
  # Stored entries [begin, begin + count) clipped to the log's size; at most 10,000 a call.

  auditConsistency @7 (fromSize :UInt64, toSize :UInt64) -> (proof :List(Data));
  # RFC 6962 consistency proof between two sizes of the log (32-byte hashes).

  deliverAlert @8 (alert :Data, signature :Data) -> (receipt :Text);
  # (issue #15 item 3) A surveillance alert from a standing query (node/alert.h): `alert` is its
  # JSON bytes, `signature` the coordinator's Ed25519 signature over
  # "trialmesh/surveillance-alert/v1\0" || alert. The site verifies it, that the signer is a
  # member with role coordinator, is the authenticated peer of this connection and a
  # coordinator of the study's governing approval, and that the alert is for this federation
  # and a study this site serves; then it appends an `alert` audit entry and counts it
  # (trialmesh_surveillance_alerts_total). Refusals as for runQuery.

  auditKeyRotations @9 (treeSize :UInt64) -> (entries :List(ProvenAuditEntry));
  # Every key-rotation entry among the first `treeSize` entries (the size of a head the site
  # signed), each with its inclusion proof into that tree: what a peer that pinned a head
  # signed by the site's previous key needs to follow the log across the key change
  # (ethics/key_rotation.h) without reading any other entry. Sites and ethics boards.
}

struct ApprovalStanding {
  state @0 :Text;          # active, suspended, revoked, awaiting recognition, not recognised,
                           # not yet valid, expired
  recognisedBy @1 :Data;   # Ed25519 key (32 bytes) of the recognising committee; empty if none
  statements @2 :List(StatementRecord);  # every stored statement about it, in the order they apply
}

struct StatementRecord {
  kind @0 :Text;        # recognition, suspension, reinstatement, revocation
  signer @1 :Data;      # Ed25519 key (32 bytes)
  effective @2 :Text;   # YYYY-MM-DD
  issuedAtMs @3 :Int64; # the signer's clock, Unix ms; 0 when the statement carries none
  reason @4 :Text;
  site @5 :Text;        # recognition: the recognising site's member name
}

struct ProvenAuditEntry {
  index @0 :UInt64;        # the entry's position (sequence number) in the log
  entry @1 :Data;          # its canonical bytes (ethics::encodeEntry)
  proof @2 :List(Data);    # RFC 6962 inclusion proof into the tree of the requested size
}

struct AuditEntry {
  rootAfter @0 :Data;  # Merkle root of the log just after this entry (32 bytes)
  entry @1 :Data;      # the entry's canonical bytes (ethics::encodeEntry)
}
