// Package resp3 reads and writes RESP3 frames, the wire format that SierraDB
// speaks. It is shared by the client's subscription connection and by the
// embedded server.
//
// The [Reader] is written for hostile input: every declared length is checked
// against [Limits] before anything is allocated, aggregates grow only as their
// elements actually arrive, and nesting is bounded (tested: TestHostileInput, FuzzReader), so a peer cannot make it
// panic or allocate without bound. Limits.MaxFrameBytes bounds the decoded
// memory of a frame (every element counts the size of a [Value], every string
// its bytes), and a [Budget] bounds the decoded memory of frames in flight
// over several readers; going beyond either is a [*BudgetError], reported
// before the memory is allocated. Every malformed frame is reported as a
// [*ProtocolError], which matches [ErrProtocol] with errors.Is.
package resp3
