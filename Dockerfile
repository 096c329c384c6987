# synth2: the service (default command) and the pipeline, CPU by default.
#   docker build -t synth2 .
#   docker build -t synth2:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TOKENIZERS_PARALLELISM=false

RUN if ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv && \
      rm -rf /var/lib/apt/lists/*; fi

WORKDIR /app
COPY pyproject.toml README.md ./
COPY synth2 synth2
COPY pipeline pipeline
COPY generators generators
COPY vlm vlm
COPY serve serve
COPY consumers consumers
COPY configs configs

RUN python3 -m pip install --extra-index-url ${TORCH_INDEX} torch torchvision && \
    python3 -m pip install .

ENV SYNTH2_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
ENTRYPOINT ["synth2"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
