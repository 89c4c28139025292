// Package payflow is the domain of the payment worker: the requests payflow
// accepts, the money rules they must satisfy, the decision between auto-pay
// and a KakaoTalk bill, the money entities (Charge and its Bills, Refund,
// Repay, a member's PaymentMethod, the ChargeView merchants see), the states
// a charge and its bills move through with their transitions, and what
// settling a bill with the PG's final word may do (Settlement, SettleOutcome
// and its refusals).
//
// It imports no Kafka, SQL or HTTP code, so every rule here can be tested and
// benchmarked in isolation and reused by the consumer, the webhook receiver,
// the reconciler and the API alike. Package store persists the entities.
package payflow
