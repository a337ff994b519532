// gtest entry point for the plugin's layer tests, in the manner of Caffe's own
// src/caffe/test/test_caffe_main.cpp (which is not installed with Caffe).
#include "caffe/caffe.hpp"
#include "caffe/test/test_caffe_main.hpp"

namespace caffe {
#ifndef CPU_ONLY
cudaDeviceProp CAFFE_TEST_CUDA_PROP;
#endif
}  // namespace caffe

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  caffe::GlobalInit(&argc, &argv);
#ifndef CPU_ONLY
  int device = 0;
  if (const char* env = getenv("MLIC_TEST_GPU")) {
    device = atoi(env);
  } else {
    cudaGetDevice(&device);
  }
  caffe::Caffe::SetDevice(device);
  cudaGetDeviceProperties(&caffe::CAFFE_TEST_CUDA_PROP, device);
  std::cout << "Testing on GPU " << device << ": " << caffe::CAFFE_TEST_CUDA_PROP.name << std::endl;
#endif
  return RUN_ALL_TESTS();
}
