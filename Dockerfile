# Multi-stage build: static binaries on a distroless, non-root base.
#
# The default target (the last stage) is the production image: `payflow`
# built with -tags production, which leaves out dev, demo, bench, sim and
# pgsim and everything they link (the embedded broker, the container client,
# the PG simulator). The `dev` target is the full binary, for the PG
# simulator in docker-compose.yml and for trying the dev commands:
# `docker build --target dev .`.
FROM golang:1.26 AS source
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .

FROM source AS build-dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /payflow ./cmd/payflow

FROM source AS build
RUN CGO_ENABLED=0 go build -tags production -trimpath -ldflags="-s -w" -o /payflow ./cmd/payflow

# The full binary. No health check of its own: what it runs decides what
# answers (docker-compose.yml gives the simulator its own).
FROM gcr.io/distroless/static-debian12:nonroot AS dev
COPY --from=build-dev /payflow /payflow
USER nonroot
ENTRYPOINT ["/payflow"]
CMD ["pgsim", "--addr", "0.0.0.0:8090"]

FROM gcr.io/distroless/static-debian12:nonroot AS production
COPY --from=build /payflow /payflow
USER nonroot
EXPOSE 8080
# The image has no shell or curl: payflow probes itself.
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["/payflow", "healthcheck"]
ENTRYPOINT ["/payflow"]
CMD ["serve"]
