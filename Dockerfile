# ScaiVault: one image. `scaivault serve` by default; `docker run IMAGE migrate` runs migrations.
# Build: V=$(python3 -c 'import scaivault; print(scaivault.__version__)')
#        docker build --build-arg VERSION=$V -t scailabs/scaivault:$V .   (EXTRAS: `server` plus the SDKs)
# VERSION defaults to scaivault.__version__ (a test keeps the two equal).

FROM python:3.11-slim AS build
WORKDIR /src
ARG EXTRAS=server,aws,gcp,azure,hashicorp,pkcs11,s3,gcs,azure_blob
COPY pyproject.toml setup.cfg README.md wsgi.py ./
COPY scaivault ./scaivault
COPY plugins ./plugins
COPY scaivault_sdk ./scaivault_sdk
COPY scaivault_mcp ./scaivault_mcp
COPY migrations_sql ./migrations_sql
# wheels for ScaiVault and every dependency, so the final stage needs no compiler or network
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[${EXTRAS}]"

FROM python:3.11-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ScaiVault" \
      org.opencontainers.image.version="${VERSION}"
ARG EXTRAS=server,aws,gcp,azure,hashicorp,pkcs11,s3,gcs,azure_blob
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIND_ADDRESS=0.0.0.0:8443 \
    HOME=/var/lib/scaivault
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/scaivault --create-home \
        --shell /usr/sbin/nologin scaivault
COPY --from=build /wheels /wheels
# installs the package and ships migrations_sql to /usr/local/share/scaivault/migrations_sql
RUN pip install --no-cache-dir --no-index --find-links /wheels "scaivault[${EXTRAS}]" \
    && rm -rf /wheels
WORKDIR /var/lib/scaivault
# numeric so that Kubernetes' runAsNonRoot can verify it
USER 10001:10001
EXPOSE 8443
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["scaivault", "healthcheck"]
ENTRYPOINT ["scaivault"]
CMD ["serve"]
