"""MLServer's custom runtime for the emotion classifier, the serving framework weighed
against emotion-serve: benchmarks.serving_frameworks copies this file into MLServer's model
folder, and it runs in MLServer's own virtualenv (so it is not a module of this package).
It answers the same Open Inference Protocol request (input `text`, BYTES) with the same
outputs, through TextClassifier."""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec, StringCodec
from mlserver.types import InferenceRequest, InferenceResponse

from emotion.predict import TextClassifier


class EmotionRuntime(MLModel):
    async def load(self) -> bool:
        self.classifier = TextClassifier(self.settings.parameters.uri)
        self.classifier.predict(["warming up"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        texts = StringCodec.decode_input(payload.inputs[0])
        predictions = self.classifier.predict(texts)
        return InferenceResponse(model_name=self.name, outputs=[
            StringCodec.encode_output("label", predictions.top()),
            NumpyCodec.encode_output("probabilities", predictions.probabilities)])
