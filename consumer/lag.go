package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/segmentio/kafka-go"
)

// GroupLag returns, for every partition of topic, the messages the group has
// not committed yet: the partition's last offset (the next one to be
// written) minus the group's committed offset. A partition the group never
// committed counts from its first retained offset, where the group would
// start; a committed offset older than the retention counts from there too.
//
// Unlike kafka-go's ReaderStats.Lag, which in a consumer group is the lag of
// whichever partition was fetched last, this covers every partition, those
// no member owns included, and is the same whichever process asks.
func GroupLag(ctx context.Context, cl *kafka.Client, group, topic string) (map[int]int64, error) {
	meta, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("consumer: lag: metadata: %w", err)
	}
	var parts []int
	for _, t := range meta.Topics {
		if t.Name != topic {
			continue
		}
		if t.Error != nil {
			return nil, fmt.Errorf("consumer: lag: topic %s: %w", topic, t.Error)
		}
		for _, p := range t.Partitions {
			parts = append(parts, p.ID)
		}
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("consumer: lag: topic %s has no partitions", topic)
	}
	reqs := make([]kafka.OffsetRequest, 0, 2*len(parts))
	for _, p := range parts {
		reqs = append(reqs, kafka.FirstOffsetOf(p), kafka.LastOffsetOf(p))
	}
	offs, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("consumer: lag: list offsets: %w", err)
	}
	first, last := map[int]int64{}, map[int]int64{}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("consumer: lag: offsets of partition %d: %w", po.Partition, po.Error)
		}
		first[po.Partition], last[po.Partition] = po.FirstOffset, po.LastOffset
	}
	fetched, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return nil, fmt.Errorf("consumer: lag: committed offsets of group %s: %w", group, err)
	}
	// A group that never committed is unknown to some brokers: nothing is
	// committed, every partition counts from its first offset.
	if fetched.Error != nil && !errors.Is(fetched.Error, kafka.GroupIdNotFound) {
		return nil, fmt.Errorf("consumer: lag: committed offsets of group %s: %w", group, fetched.Error)
	}
	committed := map[int]int64{}
	for _, p := range fetched.Topics[topic] {
		if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
			return nil, fmt.Errorf("consumer: lag: committed offset of partition %d: %w", p.Partition, p.Error)
		}
		committed[p.Partition] = p.CommittedOffset
	}
	lag := make(map[int]int64, len(parts))
	for _, p := range parts {
		l, ok := last[p]
		if !ok {
			return nil, fmt.Errorf("consumer: lag: no offsets for partition %d", p)
		}
		from, ok := committed[p]
		if !ok || from < first[p] {
			from = first[p] // never committed (-1), or committed before the retention
		}
		lag[p] = max(l-from, 0)
	}
	return lag, nil
}
