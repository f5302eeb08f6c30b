"""The PACS round trip of test_pacs_bridge.py, run inside a private network namespace.

    unshare --net -- sh -c 'ip link set lo up && exec python tests/app/orthanc_scenario.py SERIES_DIR WORK RESULT.json'

Starts Orthanc (loopback only, basic authentication on), stores the series with STOW-RS, runs the
bridge as a user would (credentials in the environment, debug logging), then looks the SEG up
with QIDO-RS and writes what it found to RESULT.json for the test to check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

USER, PASSWORD = "bridge", "pw-9f3c1e-never-logged"
PORT = 8042
URL = f"http://127.0.0.1:{PORT}/dicom-web"


def start_orthanc(work: Path) -> subprocess.Popen:
    config = {
        "Name": "DIFFUGTS-TEST",
        "StorageDirectory": str(work / "orthanc-db"),
        "IndexDirectory": str(work / "orthanc-db"),
        "HttpPort": PORT,
        "DicomPort": 4242,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD},
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomCheckModalityHost": False,
        "Plugins": ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    path = work / "orthanc.json"
    path.write_text(json.dumps(config))
    log = open(work / "orthanc.log", "w")
    server = subprocess.Popen(["Orthanc", str(path)], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{PORT}/system", auth=(USER, PASSWORD), timeout=1).ok:
                return server
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("Orthanc did not start: see orthanc.log")


def main(series_dir: str, work: str, result_path: str) -> None:
    work_path = Path(work)
    work_path.mkdir(parents=True, exist_ok=True)
    server = start_orthanc(work_path)
    try:
        session = requests.Session()
        session.auth = (USER, PASSWORD)
        client = DICOMwebClient(URL, session=session)
        datasets = [pydicom.dcmread(p) for p in sorted(Path(series_dir).glob("*.dcm"))]
        client.store_instances(datasets)
        study_uid, series_uid = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)

        environ = {k: v for k, v in os.environ.items() if not k.startswith("DIFFUGTS_PACS_")}
        environ.update({"DIFFUGTS_PACS_USER": USER, "DIFFUGTS_PACS_PASSWORD": PASSWORD})
        bridge = subprocess.run(
            [sys.executable, "-m", "tools.pacs_bridge", "--url", URL, "--study", study_uid, "--log-level", "DEBUG"],
            env=environ,
            capture_output=True,
            text=True,
            check=False,
        )
        unauthenticated = subprocess.run(
            [sys.executable, "-m", "tools.pacs_bridge", "--url", URL, "--study", study_uid],
            env={k: v for k, v in os.environ.items() if not k.startswith("DIFFUGTS_PACS_")},
            capture_output=True,
            text=True,
            check=False,
        )
        segs = client.search_for_series(study_instance_uid=study_uid, search_filters={"Modality": "SEG"})
        referenced = []
        for item in segs:
            seg_series = item["0020000E"]["Value"][0]
            for instance in client.retrieve_series_metadata(study_uid, seg_series):
                dataset = pydicom.Dataset.from_json(instance)
                referenced.append(
                    {
                        "seg_series": seg_series,
                        "sop_class": str(dataset.SOPClassUID),
                        "referenced_series": [str(s.SeriesInstanceUID) for s in dataset.ReferencedSeriesSequence],
                        "referenced_instances": sum(len(s.ReferencedInstanceSequence) for s in dataset.ReferencedSeriesSequence),
                    }
                )
        result = {
            "study": study_uid,
            "series": series_uid,
            "source_instances": len(datasets),
            "bridge_returncode": bridge.returncode,
            "bridge_output": bridge.stdout + bridge.stderr,
            "unauthenticated_returncode": unauthenticated.returncode,
            "unauthenticated_output": unauthenticated.stdout + unauthenticated.stderr,
            "segs": referenced,
            "password": PASSWORD,
        }
        Path(result_path).write_text(json.dumps(result, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(*sys.argv[1:4])
