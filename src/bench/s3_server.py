"""A real S3 server on loopback for the tests and the benchmark: moto's
server (pinned in the test virtual environment), with authentication on.

usage: python3 s3_server.py [HOST]   (moto[server] installed)

Binds HOST (default 127.0.0.1) on a free port, creates an IAM user whose
access key may do anything and a bucket named `leman`, turns request
authentication on (a wrong key or signature is refused, as S3 does), prints
one JSON line (endpoint, region, bucket, access_key_id,
secret_access_key) and serves until its standard input closes, so that it
never outlives the process that started it.
"""
import json
import logging
import sys

import boto3
from moto import settings
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

REGION = "us-east-1"
BUCKET = "leman"


def main(host):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address=host, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"

    # Set up while authentication is still off, then turn it on.
    anyone = {"region_name": REGION, "endpoint_url": endpoint,
              "aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    iam = boto3.client("iam", **anyone)
    iam.create_user(UserName="leman")
    iam.put_user_policy(UserName="leman", PolicyName="all", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
    }))
    key = iam.create_access_key(UserName="leman")["AccessKey"]
    boto3.client("s3", **anyone).create_bucket(Bucket=BUCKET)
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0

    print(json.dumps({
        "endpoint": endpoint,
        "region": REGION,
        "bucket": BUCKET,
        "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"],
    }), flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1")
