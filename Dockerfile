# Build: docker build -t certflow .   Run: see docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/certflow ./cmd/certflow \
 && mkdir -p /out/data && chmod 700 /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/certflow /usr/local/bin/certflow
COPY definitions /etc/certflow/definitions
# A named volume mounted here starts with this folder's owner: the
# nonroot user must be able to write the CA and secrets.
COPY --from=build --chown=65532:65532 /out/data /var/lib/certflow
# HTTPS for the network; plain HTTP only on the container's loopback (for
# probes run inside it), as certflow allows it without allow_plain_http.
ENV CERTFLOW_DEFINITIONS=/etc/certflow/definitions \
    CERTFLOW_DATA_DIR=/var/lib/certflow \
    CERTFLOW_LISTEN=127.0.0.1:8080 \
    CERTFLOW_TLS_LISTEN=0.0.0.0:8443
VOLUME /var/lib/certflow
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/certflow"]
CMD ["serve"]
