# Multi-stage build: a static binary on a distroless, non-root base.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /payflow ./cmd/payflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /payflow /payflow
USER nonroot
EXPOSE 8080
# The image has no shell or curl: payflow probes itself.
HEALTHCHECK --interval=10s --timeout=4s --retries=3 CMD ["/payflow", "healthcheck"]
ENTRYPOINT ["/payflow"]
CMD ["serve"]
