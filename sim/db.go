package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"

	"github.com/payflow/payflow/store"
)

// NewDatabase creates a database of its own on the server that serverDSN
// names (a run empties the database it is given, so it must never be
// payflow's), applies the schema, and returns its DSN and a func that
// drops it.
func NewDatabase(ctx context.Context, serverDSN string) (string, func(), error) {
	admin, err := pgx.Connect(ctx, serverDSN)
	if err != nil {
		return "", nil, fmt.Errorf("sim: connect: %w", err)
	}
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "payflow_sim_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("sim: create database: %w", err)
	}
	drop := func() {
		c, err := pgx.Connect(context.Background(), serverDSN)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	}
	u, err := url.Parse(serverDSN)
	if err != nil {
		drop()
		return "", nil, fmt.Errorf("sim: parse DSN: %w", err)
	}
	u.Path = "/" + name
	dsn := u.String()
	if err := store.Migrate(ctx, dsn); err != nil {
		drop()
		return "", nil, err
	}
	return dsn, drop, nil
}
