// Package offers is the broker's view of Mesos offers: per agent, the merge of
// every outstanding offer, the reservations pods hold against it, and what is
// left for the next pod.
//
// It is pure logic. The Mesos side feeds it (Add, Rescind, RemoveAgent,
// SetExecutorRunning) and acts on what it returns (Take: which offers to
// ACCEPT with which LAUNCHes; Declinable: which offers to DECLINE); the gRPC
// side serves Reserve, Unreserve and Watch from it. Every method is safe for
// concurrent use and every change is atomic under one lock, which is what
// makes "two Reserves for the last resources give one winner" true.
//
// Invariant: for every agent and role, the resources claimed by live
// reservations plus the executor's resources (while no executor runs for
// that role) are contained in the outstanding offers of that role, and no two
// reservations claim the same port. Whatever removes offered resources
// (rescind, agent loss, a launch that consumes shared offers) restores the
// invariant by marking reservations lost, oldest reservations kept first.
package offers
