"""Training: the train loop (`train`), the calibration job (`calibration_job`), the job that
builds a shipped model (`recipe`), labelled batches (`batches`) and the public datasets and
user labels as examples (`datasets`). Uses the core; the core never imports it."""
