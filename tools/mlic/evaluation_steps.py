"""The evaluation steps of one seed: the teacher's (classification, and detection with the test
boxes) and the students' on the test split, each kept as its step's results.json."""
import json
import os

import numpy as np

from mlic import devices
from mlic.report import student_rows


def test_set(dataset, nets):
    """The test split of `dataset` (sources.Dataset) as the seed's `nets` read it."""
    from mlic import inference
    return inference.read_datalist(dataset.datalists['test'], len(nets.classes),
                                   nets.cfg['num_proposals'], dataset.root_folder)


class Evaluation(object):
    """Evaluation steps in `workspace` over `dataset`, on the first of `gpus` (none: CPU).
    user_data: whether the test boxes' content enters the teacher's key (see sources)."""

    def __init__(self, workspace, dataset, gpus, user_data):
        self.work, self.data, self.gpus, self.user_data = workspace, dataset, gpus, user_data

    def run_results_step(self, step, make, describe):
        """Runs a step whose output is the dict that make(step) returns, kept as its
        results.json; returns that dict, read back (also when the step was done already)."""
        path = os.path.join(step.dir, 'results.json')

        def body(step):
            devices.use_for_inference(self.gpus)  # pycaffe's mode is per thread
            results = make(step)
            with open(path, 'w') as f:
                json.dump(results, f, indent=1)
        self.work.run_step(step, body, describe)
        with open(path) as f:
            return json.load(f)

    def teacher(self, nets, teacher, deploy_key):
        """The teacher's classification (and, with the test boxes, detection) results in its
        step's results.json; a step of its own so that it runs beside the last students instead
        of after them. deploy_key: the fingerprint of its deploy net. Returns its Trained."""
        from mlic import detection, evaluation, inference
        from mlic.seed_steps import Trained
        boxes = self.data.test_boxes
        boxes_key = self.work.file_key(boxes) if boxes else None
        step = self.work.step('teacher_eval', teacher.key, deploy_key,
                              *((boxes_key,) if self.user_data else ()), folder=nets.folder)

        def make(step):
            test = test_set(self.data, nets)
            predicted = inference.predict_teacher(nets.files['wsddn_deploy'], teacher.weights,
                                                  test, nets.cfg)
            results = {'teacher': evaluation.evaluate(predicted['scores'], test.labels)}
            if boxes:
                size = nets.cfg['image_size']
                ground_truth = inference.read_ground_truth(boxes, test.images,
                                                           self.data.root_folder, (size, size))
                results['teacher_detection'] = detection.detection_average_precision(
                    predicted['boxes'], predicted['proposal_scores'], ground_truth)
                results['teacher_corloc'] = detection.corloc(
                    predicted['boxes'], predicted['proposal_scores'], ground_truth,
                    test.labels)
            np.save(os.path.join(step.dir, 'teacher_scores.npy'), predicted['scores'])
            return results
        self.run_results_step(step, make, 'the teacher on the test split')
        return Trained(step.key, step.dir, None)

    def students(self, nets, trained, teacher_eval, deploy_key):
        """Every student of `trained` ({step name: Trained}) on the test split, with the
        teacher's results beside them; returns the results with the folder and training logs."""
        from mlic import evaluation, inference
        students = [name for name, _ in student_rows(trained)]
        step = self.work.step('evaluate', [trained[name].key for name in students],
                              teacher_eval.key, deploy_key, folder=nets.folder)

        def make(step):
            test = test_set(self.data, nets)
            with open(os.path.join(teacher_eval.dir, 'results.json')) as f:
                results = json.load(f)
            for name in students:
                scores = inference.predict_student(nets.files['student_deploy'],
                                                   trained[name].weights, test, nets.cfg)
                np.save(os.path.join(step.dir, name + '_scores.npy'), scores)
                results[name] = evaluation.evaluate(scores, test.labels)
            return results
        results = self.run_results_step(step, make, 'the students on the test split')
        results['folder'] = step.dir
        results['logs'] = {name: os.path.join(s.dir, 'train.log') for name, s in trained.items()}
        # Each student training's validation history (a run with a validation split): which
        # snapshot it kept, for the table's note.
        from mlic import converged
        summaries = {name: converged.summary_of(trained[name].dir) for name in students}
        if any(summaries.values()):
            results['validation'] = {name: s for name, s in summaries.items() if s}
        return results
