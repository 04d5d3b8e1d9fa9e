"""Lists the objects of an S3 bucket under a prefix, and fails if any of
them holds NEEDLE. The endpoint and the key come from the environment
(AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).

usage: s3_objects.py s3://BUCKET/PREFIX [NEEDLE]
Prints the keys, one per line.
"""
import sys

import boto3


def main(uri, needle=None):
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3")
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(o["Key"] for o in page.get("Contents", []))
    for key in keys:
        print(key)
        if needle and needle.encode() in s3.get_object(Bucket=bucket, Key=key)["Body"].read():
            sys.exit(f"{key} holds the needle")


if __name__ == "__main__":
    main(*sys.argv[1:])
